"""The MLflow pyfunc model of a facepaint artifact (logged by `tracking.registry.log_pyfunc` as
"models from code": MLflow stores this file, not a pickle).

    model = mlflow.pyfunc.load_model("models:/facepaint@champion")
    out = model.predict(pd.DataFrame({"image": [jpeg_or_png_bytes], "prompt": ["a smiling man"],
                                      "mask": [mask_png_bytes_or_None]}),
                        params={"steps": 50, "guidance_scale": 7.5, "seed": 0, "faces": "all"})
    # params: facepaint.edit.EditOptions and FACE_DEFAULTS (faces: all | largest | "0,2"; min_face px)
    out["image"][0]        # PNG bytes of the edited photo, with its provenance in a text chunk

Faces are detected and each selected face is edited (facepaint.faces); without a mask BiSeNet parses each
one (its weights must be available, see facepaint.masks).
"""

from __future__ import annotations

import io

import mlflow
import pandas as pd


class FacepaintModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from facepaint.edit import FaceEditor

        self.editor = FaceEditor.from_artifact(context.artifacts["artifact"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Edit each row's photo. A request the model cannot honour (a bad option, an image or mask that
        cannot be decoded, no face) raises MlflowException(INVALID_PARAMETER_VALUE), which the scoring
        server answers with HTTP 400 and the message (naming the row), never a 500 with a traceback."""
        import json

        import numpy as np
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        from facepaint import FacepaintError
        from facepaint.edit import DEFAULTS, FACE_DEFAULTS, EditOptions
        from facepaint.images import load_rgb

        def refuse(message: str):
            return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)

        missing = [c for c in ("image", "prompt") if c not in model_input]
        if missing:
            raise refuse(f"the request lacks the column(s) {missing}: send image (PNG/JPEG bytes) and prompt")
        known = EditOptions.__dataclass_fields__
        try:
            # MLflow fills every signature param with its default; cast to the fields' types
            opts = {k: type(getattr(DEFAULTS, k))(v) for k, v in (params or {}).items() if k in known}
            which = {k: type(d)((params or {}).get(k, d)) for k, d in FACE_DEFAULTS.items()}
            EditOptions(**{**DEFAULTS.__dict__, **opts})  # validate before any row is edited
        except (TypeError, ValueError) as e:
            raise refuse(f"params: {e}") from None
        images, provenance = [], []
        masks = model_input["mask"] if "mask" in model_input else [None] * len(model_input)
        for i, (image, prompt, mask) in enumerate(zip(model_input["image"], model_input["prompt"], masks)):
            try:
                if not isinstance(image, (bytes, bytearray)):
                    raise ValueError(f"image must be PNG or JPEG bytes, got {type(image).__name__}")
                m = None
                if mask is not None and not (isinstance(mask, float) and np.isnan(mask)):
                    grey = load_rgb(bytes(mask)).image.convert("L")
                    m = np.asarray(grey, dtype=np.float32) / 255.0
                result = self.editor.edit(bytes(image), str(prompt), mask=m, **which, **opts)
            except (FacepaintError, ValueError) as e:
                raise refuse(f"row {i}: {e}") from None
            info = PngInfo()
            info.add_text("facepaint", json.dumps(result.provenance))
            buf = io.BytesIO()
            Image.fromarray(result.image).save(buf, format="PNG", pnginfo=info)
            images.append(buf.getvalue())
            provenance.append(json.dumps(result.provenance))
        return pd.DataFrame({"image": images, "provenance": provenance})


mlflow.models.set_model(FacepaintModel())
