"""facepaint: text-driven face editing with SD1.5 inpainting, face masks and pixel-level blending.

The method. It imports nothing of DVC, Prefect or MLflow (tests/test_layers.py runs it without them);
`stages/`, `flows/` and `tracking/` orchestrate it. Where each step of SPEC.md lives:

- celebamask.py  dataset layout, attribute and part names, validating reader
- split.py       the seeded train/test split
- masks.py       face masks M (annotations or BiSeNet), soft and latent masks, beta
- captions.py    caption candidates and evaluation prompts from attributes
- models.py      SD1.5 model loading (pretrained inpainting and text-to-image, tiny or full-size random)
- latents.py     the VAE latent cache for training
- adapter.py     the face-aware text adapter A(E) = W2 SiLU(W1 E), E_hat = E + adapter_scale * beta * A(E)
- loss.py        the mask-weighted noise-prediction loss
- train.py       k/v + adapter fine-tuning, checkpoints and resume
- artifact.py    the trained artifact (k/v + adapter, its Conditions) and applying it
- generate.py    the Inpainter: pipeline, speed options, batched generation
- faces.py       face detection (RetinaFace, OpenCV's cascade), selection, alignment, paste-back of several faces
- edit.py        read, find and align faces, mask, generate, paste back, blend, provenance (FaceEditor)
- speed.py       speed knobs shared by training and editing
- methods.py     the evaluation's methods (ours and the SD1.5 baselines), their settings and timing
- brushnet.py    the BrushNet baseline (our model class for TencentARC's checkpoint) and its loading
- diptych.py     the Diptych Prompting baseline (FLUX.1-dev + inpainting ControlNet) and its loading
- metrics.py     PSNR, LPIPS, FID, PickScore
- evaluate.py    pairs, per-image metrics, table and figures
- watermark.py   an invisible mark confined to the edited face
- cli.py         the `facepaint` command (`facepaint edit ...`, `facepaint detect ...`)
- images.py, io.py, report.py   safe image reading, atomic writes, per-stage reports
"""

__version__ = "0.1.0"


class FacepaintError(Exception):
    """Base of facepaint's own errors. Each message names the file or value at fault and what to do, so
    the command lines print it as one `error:` line instead of a traceback."""
