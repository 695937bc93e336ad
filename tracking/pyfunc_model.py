"""The MLflow pyfunc model of a facepaint artifact.

`tracking.registry.log_pyfunc` logs it as "models from code": MLflow stores this file, not a pickle.

    model = mlflow.pyfunc.load_model("models:/facepaint@champion")
    out = model.predict(pd.DataFrame({"image": [jpeg_or_png_bytes], "prompt": ["a smiling man"],
                                      "mask": [mask_png_bytes_or_None]}),
                        params={"steps": 50, "guidance_scale": 7.5, "seed": 0, "faces": "all"})
    # params: the fields of facepaint.method.options.SamplingOptions and facepaint.editing.editor.EditChoices
    # (faces: all | largest | "0,2"; min_face px), as text or numbers
    out["image"][0]        # PNG bytes of the edited photo: its provenance in a text chunk, a signed C2PA manifest

Faces are detected and each selected face is edited (facepaint.method.face_helper); without a mask the automatic
mask is BiSeNet's when its weights are available (see facepaint.method.masks), else the face mesh's outline
(MediaPipe's model files are logged with the model).

Concurrency: one edit at a time, behind a lock. `mlflow models serve` runs one uvicorn worker whose requests
each call `predict` from a thread of the event loop's pool (`asyncio.to_thread`), all with the one loaded
model. Its FaceEditor is not re-entrant: the diffusers pipeline and its scheduler (DPM's step index and earlier
outputs live on the one scheduler object), the face detector's TFLite interpreters and the face parser keep
per-call state, so 10 simultaneous requests failed (1 to 9 of them with HTTP 400 and an OpenCV or pipeline
error) and identical requests got different images. The choices:
- a lock (this): `predict` edits one request at a time; the server queues the others (uvicorn and the thread
  pool hold them; each waits its turn). One model on one device gains nothing from running edits side by side:
  a GPU runs one denoising loop at full occupancy and 2 CPU cores are busy with one (torch's threads), so the
  throughput is the same and every request's latency is its queue's.
- a pool of editors (or one per thread): N copies of the model's weights and its face models (N times the
  memory: SD1.5's weights are ~4 GB in fp32, ~2 GB in fp16) for no throughput on one device. More throughput
  means more devices: `mlflow models serve --workers N` starts N processes, each with its own model and lock.
Everything an edit mutates is used inside the lock: the editor and its helper (detector, face parser, masks,
lazily loaded weights), the pipeline's scheduler and the torch generators it seeds per face, the watermark and
the C2PA signing (whose key is made on first use). A request is checked against the input limits
(facepaint.common.limits) and its params read before it queues (`check_request`: header reads, no decoding), so
a request over a limit is answered at once, never after the queue; its images are decoded inside the lock
(`read_request`), so the queue holds undecoded requests and one request's decoded images at a time. When the
scoring server's request timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT, set by `mlflow models serve`: 60 s by
default) passes while a request waits for its turn, the server has already answered it 504: it is dropped (HTTP
503) instead of edited for nobody. (Raise the timeout for a long queue: N requests wait N edits.)

Errors: a request the model cannot honour raises `ServingError` (HTTP 400), whose message is the reason alone,
naming the row or param: the scoring server prefixes an error's message with a dump of the request's DataFrame
(`Failed to predict data '<the image bytes...>'. Error: ...`, mlflow.pyfunc.scoring_server.invocations), which
a ServingError does not keep. An unexpected failure of an edit is a 500 with a one-line message (the traceback is
in the server's log), not MLflow's generic 400 with the traceback in the answer.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)
MAX_MESSAGE = 1000  # characters of an error's message in an answer (the reason; the rest is in the server's log)


class ServingError(MlflowException):
    """An error the scoring server answers with its HTTP status (by `error_code`) and `message`: the reason.

    MLflow's scoring server rewrites the message of an MlflowException raised by `predict` as
    f"Failed to predict data '{data}'. \\nError: {message}", where `data` is the request's DataFrame: a dump of
    its image bytes before the reason. A rewrite that wraps the reason is not kept here, so the answer leads
    with the reason and never echoes the request."""

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        reason = self.__dict__.get("_reason")
        if reason is None or not str(value).endswith(reason):  # set once (MlflowException.__init__)
            self._reason = str(value)


def _error(message: str, error_code) -> ServingError:
    message = str(message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return ServingError(message, error_code=error_code)


def refuse(message: str) -> ServingError:
    """The error the scoring server answers with HTTP 400 and `message`."""
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return _error(message, INVALID_PARAMETER_VALUE)


def _header_check(data, what: str) -> None:
    """The input limits of one image of a request (its bytes, and its pixels from its header), without decoding
    it: LimitError or ValueError naming `what`."""
    import io

    from PIL import Image

    from facepaint.common.limits import MAX_PIXELS, LimitError, check_bytes, check_pixels

    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"{what} must be PNG or JPEG bytes, got {type(data).__name__}")
    check_bytes(len(data), what)
    try:  # (PIL warns past 89 MP: warnings.catch_warnings is not thread-safe, and this runs outside the lock)
        with Image.open(io.BytesIO(data)) as im:  # reads the header: nothing is decoded
            width, height = im.size
    except Image.DecompressionBombError as e:  # past PIL's own limit (179 MP), far past ours
        raise LimitError(f"{what} is over the limit of {MAX_PIXELS / 1e6:g} megapixels ({e})") from None
    except Exception as e:
        raise ValueError(f"{what} is not an image file PIL can read ({type(e).__name__}): send PNG or JPEG") from None
    check_pixels(width, height, what)


def _no_mask(mask) -> bool:
    return mask is None or (isinstance(mask, float) and mask != mask)  # left out, None or NaN (pandas)


def check_request(model_input: pd.DataFrame, params: dict | None = None) -> tuple:
    """A request checked without decoding anything: its columns, its number of rows, its params (read by
    facepaint's one parser of user values, `parse_edit_options`: "false" is False, 2.5 steps an error), and each
    row's prompt and images against the input limits (facepaint.common.limits: bytes, and pixels from the image's
    header). Returns (SamplingOptions, EditChoices) for `FaceEditor.edit`; raises `refuse` naming the column,
    param or row."""
    from facepaint.common.limits import MAX_ROWS, MAX_STEPS, check_prompt
    from facepaint.editing.editor import CHOICES, SAMPLING, parse_edit_options

    missing = [c for c in ("image", "prompt") if c not in model_input]
    if missing:
        raise refuse(f"the request lacks the column(s) {missing}: send image (PNG/JPEG bytes) and prompt")
    if len(model_input) > MAX_ROWS:
        raise refuse(
            f"the request has {len(model_input)} rows, over the limit of {MAX_ROWS} photos per request: send "
            "them in several requests"
        )
    try:  # MLflow fills every signature param with its default
        options = parse_edit_options({k: v for k, v in (params or {}).items() if k in SAMPLING | CHOICES})
    except (TypeError, ValueError) as e:
        raise refuse(f"params: {e}") from None
    if options[0].steps > MAX_STEPS:  # SamplingOptions' own bound, should it be higher
        raise refuse(f"params: steps is {options[0].steps}, over the limit of {MAX_STEPS} denoising steps per edit")
    masks = model_input["mask"] if "mask" in model_input else [None] * len(model_input)
    for i, (image, prompt, mask) in enumerate(zip(model_input["image"], model_input["prompt"], masks)):
        try:
            check_prompt(prompt, "prompt")  # None or a list is refused, not edited as its printed form
            _header_check(image, "image")
            if not _no_mask(mask):
                _header_check(mask, "mask")
        except ValueError as e:
            raise refuse(f"row {i}: {e}") from None
    return options


def read_request(model_input: pd.DataFrame, params: dict | None = None) -> tuple[list[tuple], tuple]:
    """A request checked and decoded without the model: ([(image bytes, prompt, mask array or None)] per row,
    (SamplingOptions, EditChoices) for `FaceEditor.edit`), or `refuse` naming the column, param or row. First
    `check_request` (the limits: nothing is decoded for a request over one), then every image is decoded once
    here (a bad one fails before any row is edited); the input example is checked with this when the model is
    logged (`tracking.registry.log_pyfunc`), so that no generation runs then."""
    import numpy as np

    from facepaint.common.errors import FacepaintError
    from facepaint.common.images import load_rgb

    options = check_request(model_input, params)
    rows = []
    masks = model_input["mask"] if "mask" in model_input else [None] * len(model_input)
    for i, (image, prompt, mask) in enumerate(zip(model_input["image"], model_input["prompt"], masks)):
        try:
            load_rgb(bytes(image))
            m = None
            if not _no_mask(mask):
                grey = load_rgb(bytes(mask)).image.convert("L")
                m = np.asarray(grey, dtype=np.float32) / 255.0
        except (FacepaintError, ValueError) as e:
            raise refuse(f"row {i}: {e}") from None
        rows.append((bytes(image), prompt, m))
    return rows, options


def _queue_timeout() -> float:
    """Seconds a request waits for its turn: the scoring server's request timeout, after which it has answered
    the request 504; -1 (no limit) outside the server."""
    try:
        return max(0.0, float(os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"]))
    except (KeyError, ValueError):
        return -1


class FacepaintModel(mlflow.pyfunc.PythonModel):
    def __init__(self):
        self._lock = threading.Lock()  # one edit at a time (see the module docstring)

    def load_context(self, context):
        from facepaint.editing.editor import FaceEditor

        # MediaPipe's face models travel with the logged model (registry.log_model), so serving needs no fetch
        self.editor = FaceEditor.from_artifact(
            context.artifacts["artifact"], face_models=context.artifacts.get("face_models")
        )

    @contextmanager
    def _turn(self):
        """Hold the model: the lock, waited for at most the scoring server's request timeout."""
        from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

        timeout = _queue_timeout()
        if not self._lock.acquire(timeout=timeout):
            raise _error(
                f"the server is busy: the request waited {timeout:g} s for the edits before it "
                "(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) and was not edited; retry later",
                TEMPORARILY_UNAVAILABLE,
            )
        try:
            yield
        finally:
            self._lock.release()

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Edit each row's photo, one request at a time (see the module docstring). A request the model cannot
        honour (a bad option, an input over a limit, an image or mask that cannot be decoded, no face, a result
        the base model's safety checker flags) raises ServingError(INVALID_PARAMETER_VALUE), which the scoring
        server answers with HTTP 400 and the message (naming the row or param), never a 500 with a traceback;
        an unexpected failure (signing, memory) is a 500 with a one-line message."""
        import json
        from dataclasses import asdict

        from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

        from facepaint.common.errors import FacepaintError

        check_request(model_input, params)  # before the queue: the limits need no turn
        images, provenance = [], []
        with self._turn():
            rows, (options, choices) = read_request(model_input, params)
            for i, (image, prompt, m) in enumerate(rows):
                try:
                    result = self.editor.edit(image, prompt, mask=m, options=options, **asdict(choices))
                except (FacepaintError, ValueError) as e:
                    raise refuse(f"row {i}: {e}") from None
                except Exception as e:
                    log.exception("row %d: the edit failed", i)
                    raise _error(f"row {i}: the edit failed: {type(e).__name__}: {e}", INTERNAL_ERROR) from None
                # the bytes `facepaint edit` writes: provenance and a C2PA manifest signed with the server's key
                # (facepaint.editing.signing.key_dir: $FACEPAINT_C2PA_DIR or the config dir)
                try:
                    images.append(result.png())
                except Exception as e:
                    log.exception("row %d: the edited photo could not be written", i)
                    raise _error(
                        f"row {i}: the edited photo could not be written or signed: {type(e).__name__}: {e}",
                        INTERNAL_ERROR,
                    ) from None
                provenance.append(json.dumps(result.provenance))
        return pd.DataFrame({"image": images, "provenance": provenance})


mlflow.models.set_model(FacepaintModel())
