"""facepaint: text-driven face editing with SD1.5 inpainting, face masks and pixel-level blending.

The library, in layers whose imports go one way only (tests/test_layers.py fails on an upward import or a
cycle); nothing here imports DVC, Prefect or MLflow (`stages/`, `flows/` and `tracking/` orchestrate it):

- common/      errors, checks of settings and user input, safe images, atomic writes, stage reports
- method/      the method: models, masks, adapter, loss, training, artifact, generation, sampling options, blend
- data/        the dataset and its precompute: CelebAMask-HQ layout, split, captions, masks, latent cache
- evaluation/  every method on the same pairs, the paper's metrics, tables and figures; methods/ one per method
- editing/     the product: faces in any photo, the face helper, the editor, provenance, safety, signing
- apps/        the `facepaint` command, the web app, the release an app serves

    common -> method -> data -> evaluation
                     -> editing -> apps

docs/layout.md lists every module with its docstring's first line (`python -m tools.module_map`).
"""

__version__ = "0.1.0"
