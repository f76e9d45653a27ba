"""Your own labelled survey as a data source: a seismic cube (or section) and its interpreter's
label volume, tiled into the Kaggle layout (:mod:`~saltseg.survey.tiling`), with a known mosaic
layout and folds of contiguous slices (:mod:`~saltseg.survey.steps`); the volume is predicted
by ``predict-section``. See docs/own-data.md."""
