"""The MLflow pyfunc model of a facepaint artifact (logged by `tracking.registry.log_pyfunc` as
"models from code": MLflow stores this file, not a pickle).

    model = mlflow.pyfunc.load_model("models:/facepaint@champion")
    out = model.predict(pd.DataFrame({"image": [jpeg_or_png_bytes], "prompt": ["a smiling man"],
                                      "mask": [mask_png_bytes_or_None]}),
                        params={"steps": 50, "guidance_scale": 7.5, "seed": 0, "faces": "all"})
    # params: facepaint.edit.EditOptions and FACE_DEFAULTS (faces: all | largest | "0,2"; min_face px)
    out["image"][0]        # PNG bytes of the edited photo: its provenance in a text chunk, a signed C2PA manifest

Faces are detected and each selected face is edited (facepaint.faces); without a mask BiSeNet parses each
one (its weights must be available, see facepaint.masks).
"""

from __future__ import annotations

import mlflow
import pandas as pd


def cast_param(key: str, value, default):
    """A request's param as the type of its default, or a ValueError naming it: "false" is False (bool("false")
    is True), 2.5 or NaN steps an error (int() would give 2 or crash); EditOptions then checks the values."""
    import math
    import numbers

    kind = type(default)
    if kind is bool:
        text = str(value).strip().lower()
        if text in ("true", "false", "1", "0"):
            return text in ("true", "1")
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, str):
            try:
                value = int(value.strip()) if kind is int else float(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{key} must be a number, got {value!r}")
        if isinstance(value, numbers.Integral):
            if kind is float and abs(value) > 2**1000:  # float() would overflow
                raise ValueError(f"{key} must be a finite number, got {value}")
            return kind(value)
        if kind is float:
            return float(value)
        if not math.isfinite(value) or not float(value).is_integer():
            raise ValueError(f"{key} must be a whole number, got {value!r}")
        return int(value)
    return kind(value)


def refuse(message: str):
    """The error the scoring server answers with HTTP 400 and `message`."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def read_request(model_input: pd.DataFrame, params: dict | None = None) -> tuple[list[tuple], dict]:
    """A request checked and decoded without the model: ([(image bytes, prompt, mask array or None)] per row,
    `FaceEditor.edit`'s options), or `refuse` naming the column, param or row. Every image is decoded once here
    (a bad one fails before any row is edited); the input example is checked with this when the model is
    logged (`tracking.registry.log_pyfunc`), so that no generation runs then."""
    import numpy as np

    from facepaint import FacepaintError
    from facepaint.edit import DEFAULTS, FACE_DEFAULTS, EditOptions, check_face_options
    from facepaint.faces import parse_selection
    from facepaint.images import load_rgb

    missing = [c for c in ("image", "prompt") if c not in model_input]
    if missing:
        raise refuse(f"the request lacks the column(s) {missing}: send image (PNG/JPEG bytes) and prompt")
    known = EditOptions.__dataclass_fields__
    try:
        # MLflow fills every signature param with its default; cast to the fields' types
        opts = {k: cast_param(k, v, getattr(DEFAULTS, k)) for k, v in (params or {}).items() if k in known}
        which = {k: cast_param(k, (params or {}).get(k, d), d) for k, d in FACE_DEFAULTS.items()}
        EditOptions(**{**DEFAULTS.__dict__, **opts})  # validate before any row is edited
        check_face_options(min_face=which["min_face"])
        parse_selection(which["faces"])
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
    return rows, {**which, **opts}


class FacepaintModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from facepaint.edit import FaceEditor

        self.editor = FaceEditor.from_artifact(context.artifacts["artifact"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Edit each row's photo. A request the model cannot honour (a bad option, an image or mask that
        cannot be decoded, no face, a result the base model's safety checker flags) raises
        MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers with HTTP 400 and the message
        (naming the row), never a 500 with a traceback."""
        import json

        from facepaint import FacepaintError

        rows, options = read_request(model_input, params)
        images, provenance = [], []
        for i, (image, prompt, m) in enumerate(rows):
            try:
                result = self.editor.edit(image, prompt, mask=m, **options)
            except (FacepaintError, ValueError) as e:
                raise refuse(f"row {i}: {e}") from None
            # the bytes `facepaint edit` writes: provenance and a C2PA manifest signed with the server's key
            # (facepaint.signing.key_dir: $FACEPAINT_C2PA_DIR or the config dir); failing to sign is a 500
            images.append(result.png())
            provenance.append(json.dumps(result.provenance))
        return pd.DataFrame({"image": images, "provenance": provenance})


mlflow.models.set_model(FacepaintModel())
