"""Data: the Kaggle layout reader, RLE masks, the synthetic section generator, folds, datasets."""
