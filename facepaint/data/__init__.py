"""The dataset and its precompute (the data stages' work): the CelebAMask-HQ layout, the split, captions,
face masks and the latent cache, and the training set read back for training. Imports facepaint.common and
facepaint.method."""
