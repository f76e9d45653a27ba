"""Salt prediction on whole seismic sections and volumes (SEG-Y, NumPy, PNG/TIFF).

:func:`~saltseg.sections.predict.predict_section` runs the trained ensemble over overlapping
tiles (:mod:`~saltseg.sections.stitch`) of inputs read slice by slice (:mod:`~saltseg.sections.io`).
"""

from saltseg.sections.predict import predict_section
from saltseg.sections.stitch import Stitcher, stitch

__all__ = ["Stitcher", "predict_section", "stitch"]
