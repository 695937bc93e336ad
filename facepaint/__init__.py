"""facepaint: text-driven face editing with SD1.5 inpainting, face masks and pixel-level blending.

The core library (the method). It imports nothing of DVC, Prefect or MLflow; `stages/` and `flows/`
wrap it. Where each step of SPEC.md lives:

- celebamask.py  dataset layout, attribute names, validating reader
- demo.py        the synthetic demo dataset in that layout
- split.py       the seeded train/test split
- masks.py       face masks (annotations or BiSeNet), soft and latent masks, beta
- captions.py    caption candidates and evaluation prompts from attributes
- models.py      all model loading (pretrained SD1.5 inpainting, tiny or full-size random)
- latents.py     the VAE latent cache for training
- adapter.py     the face-aware text adapter A(E) = W2 SiLU(W1 E), E_hat = E + lambda * beta * A(E)
- loss.py        the mask-weighted noise-prediction loss
- train.py       k/v + adapter fine-tuning, checkpoints and resume
- artifact.py    the trained artifact (k/v + adapter safetensors, provenance json) and applying it
- edit.py        FaceEditor: face mask, crop, inpainting with the adapter, pixel-level blending
- watermark.py   an invisible mark confined to the edited face
- cli.py         the `facepaint` command (`facepaint edit ...`)
- images.py, io.py, report.py   safe image reading, atomic writes, per-stage reports
"""

__version__ = "0.1.0"


class FacepaintError(Exception):
    """Base of facepaint's own errors. Each message names the file or value at fault and what to do, so
    the command lines print it as one `error:` line instead of a traceback."""
