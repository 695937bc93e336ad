"""The MLflow pyfunc model of a facepaint artifact.

`tracking.registry.log_pyfunc` logs it as "models from code": MLflow stores this file, not a pickle.

    model = mlflow.pyfunc.load_model("models:/facepaint@champion")
    out = model.predict(pd.DataFrame({"image": [jpeg_or_png_bytes], "prompt": ["a smiling man"],
                                      "mask": [mask_png_bytes_or_None]}),
                        params={"steps": 50, "guidance_scale": 7.5, "seed": 0, "faces": "all"})
    # params: the fields of facepaint.method.options.SamplingOptions and facepaint.editing.editor.EditChoices
    # (faces: all | largest | "0,2"; min_face px), as text or numbers
    out["image"][0]        # PNG bytes of the edited photo: its provenance in a text chunk, a signed C2PA manifest

Faces are detected and each selected face is edited (facepaint.editing.helper); without a mask the automatic
mask is BiSeNet's when its weights are available (see facepaint.method.masks), else the face mesh's outline
(MediaPipe's model files are logged with the model).
"""

from __future__ import annotations

import mlflow
import pandas as pd


def refuse(message: str):
    """The error the scoring server answers with HTTP 400 and `message`."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def read_request(model_input: pd.DataFrame, params: dict | None = None) -> tuple[list[tuple], tuple]:
    """A request checked and decoded without the model: ([(image bytes, prompt, mask array or None)] per row,
    (SamplingOptions, EditChoices) for `FaceEditor.edit`), or `refuse` naming the column, param or row. The
    params are read by facepaint's one parser of user values (`parse_edit_options`: "false" is False, 2.5
    steps an error). Every image is decoded once here (a bad one fails before any row is edited); the input
    example is checked with this when the model is logged (`tracking.registry.log_pyfunc`), so that no
    generation runs then."""
    import numpy as np

    from facepaint.common.errors import FacepaintError
    from facepaint.common.images import load_rgb
    from facepaint.editing.editor import CHOICES, SAMPLING, parse_edit_options

    missing = [c for c in ("image", "prompt") if c not in model_input]
    if missing:
        raise refuse(f"the request lacks the column(s) {missing}: send image (PNG/JPEG bytes) and prompt")
    try:  # MLflow fills every signature param with its default
        options = parse_edit_options({k: v for k, v in (params or {}).items() if k in SAMPLING | CHOICES})
    except (TypeError, ValueError) as e:
        raise refuse(f"params: {e}") from None
    rows = []
    masks = model_input["mask"] if "mask" in model_input else [None] * len(model_input)
    for i, (image, prompt, mask) in enumerate(zip(model_input["image"], model_input["prompt"], masks)):
        try:
            if not isinstance(image, (bytes, bytearray)):
                raise ValueError(f"image must be PNG or JPEG bytes, got {type(image).__name__}")
            load_rgb(bytes(image))
            m = None
            if mask is not None and not (isinstance(mask, float) and np.isnan(mask)):
                grey = load_rgb(bytes(mask)).image.convert("L")
                m = np.asarray(grey, dtype=np.float32) / 255.0
        except (FacepaintError, ValueError) as e:
            raise refuse(f"row {i}: {e}") from None
        rows.append((bytes(image), str(prompt), m))
    return rows, options


class FacepaintModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from facepaint.editing.editor import FaceEditor

        # MediaPipe's face models travel with the logged model (registry.log_model), so serving needs no fetch
        self.editor = FaceEditor.from_artifact(
            context.artifacts["artifact"], face_models=context.artifacts.get("face_models")
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Edit each row's photo. A request the model cannot honour (a bad option, an image or mask that
        cannot be decoded, no face, a result the base model's safety checker flags) raises
        MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers with HTTP 400 and the message
        (naming the row), never a 500 with a traceback."""
        import json
        from dataclasses import asdict

        from facepaint.common.errors import FacepaintError

        rows, (options, choices) = read_request(model_input, params)
        images, provenance = [], []
        for i, (image, prompt, m) in enumerate(rows):
            try:
                result = self.editor.edit(image, prompt, mask=m, options=options, **asdict(choices))
            except (FacepaintError, ValueError) as e:
                raise refuse(f"row {i}: {e}") from None
            # the bytes `facepaint edit` writes: provenance and a C2PA manifest signed with the server's key
            # (facepaint.editing.signing.key_dir: $FACEPAINT_C2PA_DIR or the config dir); failing to sign is a 500
            images.append(result.png())
            provenance.append(json.dumps(result.provenance))
        return pd.DataFrame({"image": images, "provenance": provenance})


mlflow.models.set_model(FacepaintModel())
