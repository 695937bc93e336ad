"""Serving under load (tracking/pyfunc_model.py): simultaneous requests to one loaded model get the answer of the
same request alone; a request over an input limit (facepaint.common.limits) is refused before anything of it is
decoded or edited; the scoring server's answers lead with the reason and never echo the request's bytes.

Requests go through MLflow's own scoring code (`mlflow.pyfunc.scoring_server.invocations`, what
`mlflow models serve` runs in a thread per request) on the model as `registry.log_pyfunc` logs it, in process."""

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facepaint.common import limits


def png(array_or_image) -> bytes:
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def astronaut_request():
    """(photo PNG, mask PNG): the astronaut portrait at 256 px with her face painted (a real face: the detector,
    the alignment and the face mesh all run)."""
    from tests.method import astronaut

    photo = Image.fromarray(astronaut.photo()).resize((256, 256), Image.Resampling.BILINEAR)
    mask = Image.fromarray(astronaut.face_mask().astype(np.uint8) * 255).resize((256, 256), Image.Resampling.NEAREST)
    return png(photo), png(mask)


@pytest.fixture(scope="module")
def served(tiny_artifact, tmp_path_factory):
    """The tiny artifact's pyfunc model, logged by `registry.log_pyfunc` into a temporary store (its code and
    signature as served) and loaded as the scoring server loads it."""
    with pytest.MonkeyPatch.context() as mp:
        store = tmp_path_factory.mktemp("store")
        mp.chdir(store)
        mp.setenv("FACEPAINT_TRACKING", "on")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        from tracking import registry, runs

        mlflow = runs._mlflow()
        mlflow.set_experiment("serving")  # in this store: an earlier test's active experiment is another store's
        with mlflow.start_run():
            uri = registry.log_pyfunc(tiny_artifact.path)
        model = mlflow.pyfunc.load_model(uri)
    photo = png(np.zeros((64, 64, 3), np.uint8))
    mask = png(np.full((64, 64), 255, np.uint8))
    frame = pd.DataFrame({"image": [photo], "prompt": ["a face"], "mask": [mask]})
    model.predict(frame, params={"steps": 1})  # torch's first call (seconds on a CPU) is not a test's
    return model


def answer(model, body) -> tuple[int, dict]:
    """(HTTP status, JSON body) of the scoring server's answer to POST /invocations with `body`."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    try:
        r = scoring_server.invocations(data, "application/json", model, model.metadata.get_input_schema())
        return r.status, json.loads(r.response)
    except MlflowException as e:  # as the server's handler answers it (_async_catch_mlflow_exception)
        return e.get_http_status_code(), json.loads(e.serialize_as_json())


def body(photo: bytes, prompt="a smiling woman", mask: bytes | None = None, rows=1, **params) -> dict:
    columns = ["image", "prompt"] + (["mask"] if mask is not None else [])
    row = [b64(photo), prompt] + ([b64(mask)] if mask is not None else [])
    return {"dataframe_split": {"columns": columns, "data": [row] * rows}, "params": {"steps": 2, **params}}


# ---------------------------------------------------------------------------------------- concurrency


def test_simultaneous_requests_get_the_answer_of_the_request_alone(served, astronaut_request):
    """6 identical requests at once (the scoring server's thread pool on 2 cores runs 6) each get the answer of
    the request alone, pixel for pixel. The DPM scheduler keeps each denoising loop's state (its step index, the
    previous steps' outputs) on the one scheduler object the pipeline shares: without the lock around predict
    every one of these requests failed (IndexError); with DDIM they raced less visibly (the issue's OpenCV
    errors and differing images came from the detector and the pipeline at full size)."""
    photo, mask = astronaut_request
    request = body(photo, mask=mask, seed=3, min_face=32, scheduler="dpm", steps=3)
    status, alone = answer(served, request)
    assert status == 200, alone
    expected = pixels(base64.b64decode(alone["predictions"][0]["image"]))
    start = threading.Barrier(6)

    def at_once(_):
        start.wait()
        return answer(served, request)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(at_once, range(6)))
    assert [status for status, _ in answers] == [200] * 6, [a.get("message") for _, a in answers]
    for _, got in answers:
        assert np.array_equal(pixels(base64.b64decode(got["predictions"][0]["image"])), expected)


class StubEditor:
    """A FaceEditor that records its calls (optionally failing with `error`)."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = [], error

    def edit(self, image, prompt, *, mask=None, options=None, **choices):
        self.calls.append(prompt)
        if self.error is not None:
            raise self.error
        return SimpleNamespace(provenance={"prompt": prompt}, png=lambda: b"png bytes")


def test_a_request_that_waited_past_the_server_timeout_is_not_edited(monkeypatch):
    """The scoring server answers 504 after MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT; a request still waiting for
    its turn then is dropped with a 503 instead of edited for nobody."""
    from tracking.pyfunc_model import FacepaintModel

    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "0.2")
    model = FacepaintModel()
    model.editor = StubEditor()
    frame = pd.DataFrame({"image": [png(np.zeros((8, 8, 3), np.uint8))], "prompt": ["a face"]})
    with model._lock:  # another request's edit
        with pytest.raises(Exception, match="the server is busy: the request waited 0.2 s") as caught:
            model.predict(None, frame)
    assert caught.value.get_http_status_code() == 503 and model.editor.calls == []
    assert model.predict(None, frame)["image"][0] == b"png bytes"  # its turn: edited


# ------------------------------------------------------------------------------------- input limits


@pytest.fixture
def no_decoding(monkeypatch):
    """The stub editor of a FacepaintModel, and any image decoding (PIL's ImageFile.load) fails the test."""
    from PIL import ImageFile

    from tracking.pyfunc_model import FacepaintModel

    decoded = []

    def load(im):
        decoded.append(im.size)
        raise AssertionError(f"an image of {im.size} was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    model = FacepaintModel()
    model.editor = StubEditor()
    yield model
    assert decoded == [] and model.editor.calls == []


def bomb(width=5000, height=5000) -> bytes:
    """A 1-bit PNG of `width` x `height` (25 megapixels, over the 24 MP limit): a few KB that decode to 25 MB
    (as RGB: 75 MB)."""
    return png(Image.new("1", (width, height)))


def png_header(width: int, height: int) -> bytes:
    """A PNG file of `width` x `height` with no pixel data: what PIL reads before it decodes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


SMALL = png(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize(
    "frame, reason",
    [
        (
            pd.DataFrame({"image": [SMALL] * (limits.MAX_ROWS + 1), "prompt": ["a face"] * (limits.MAX_ROWS + 1)}),
            f"the request has {limits.MAX_ROWS + 1} rows, over the limit of {limits.MAX_ROWS} photos per request",
        ),
        (pd.DataFrame({"image": [SMALL], "prompt": [None]}), "row 0: prompt must be text, got NoneType None"),
        (  # pandas' missing value in a column of text
            pd.DataFrame({"image": [SMALL, SMALL], "prompt": ["a face", None]}),
            "row 1: prompt must be text, got float nan",
        ),
        (pd.DataFrame({"image": [SMALL], "prompt": [["a", "b"]]}), "row 0: prompt must be text, got list ['a', 'b']"),
        (
            pd.DataFrame({"image": [SMALL], "prompt": ["a" * 1_000_000]}),
            f"row 0: prompt is 1,000,000 characters, over the limit of {limits.MAX_PROMPT_CHARS:,}",
        ),
        (
            pd.DataFrame({"image": [SMALL + bytes(limits.MAX_BYTES)], "prompt": ["a face"]}),
            f"row 0: image is 25.0 MiB, over the limit of {limits.MAX_BYTES / 2**20:g} MiB",
        ),
        (
            pd.DataFrame({"image": [SMALL, bomb()], "prompt": ["a face", "a face"]}),
            "row 1: image is 5000x5000 (25.0 megapixels), over the limit of 24 megapixels",
        ),
        (  # past PIL's own limit (179 MP), which it raises while reading the header
            pd.DataFrame({"image": [png_header(20_000, 10_000)], "prompt": ["a face"]}),
            "row 0: image is over the limit of 24 megapixels (Image size (200000000 pixels) exceeds limit",
        ),
        (
            pd.DataFrame({"image": [SMALL], "prompt": ["a face"], "mask": [bomb(6000, 4001)]}),
            "row 0: mask is 6000x4001 (24.0 megapixels), over the limit of 24 megapixels",
        ),
        (pd.DataFrame({"image": [SMALL], "prompt": ["a face"], "mask": ["white"]}), "row 0: mask must be PNG or JPEG"),
        (pd.DataFrame({"image": [b"junk"], "prompt": ["a face"]}), "row 0: image is not an image file PIL can read"),
    ],
    ids=[
        "rows",
        "prompt-none",
        "prompt-missing",
        "prompt-list",
        "prompt-1MB",
        "bytes",
        "bomb",
        "bomb-200MP",
        "mask-bomb",
        "mask-text",
        "junk",
    ],
)
def test_a_request_over_a_limit_is_refused_before_anything_is_decoded(no_decoding, frame, reason):
    from mlflow.exceptions import MlflowException

    from tracking.pyfunc_model import read_request

    for check in (lambda: no_decoding.predict(None, frame), lambda: read_request(frame)):
        with pytest.raises(MlflowException) as caught:
            check()
        assert caught.value.message.startswith(reason), caught.value.message
        assert caught.value.get_http_status_code() == 400 and len(caught.value.message) < 400


def test_steps_over_the_limit_are_refused_naming_steps(no_decoding):
    from mlflow.exceptions import MlflowException

    frame = pd.DataFrame({"image": [SMALL], "prompt": ["a face"]})
    with pytest.raises(MlflowException, match=r"^params: steps .*200") as caught:
        no_decoding.predict(None, frame, params={"steps": limits.MAX_STEPS + 1})
    assert caught.value.get_http_status_code() == 400


# ---------------------------------------------------------------------------------------- the answers


def test_the_answer_leads_with_the_reason_and_never_echoes_the_request(served, astronaut_request):
    """MLflow's scoring server prefixes a model's error with a dump of the request's DataFrame; the model's
    answers keep the reason alone (and a 1 MB prompt is a short 400, not a traceback)."""
    photo, mask = astronaut_request
    for request, reason in (
        (body(photo, prompt="a" * 1_000_000, mask=mask), "row 0: prompt is 1,000,000 characters"),
        (body(photo, prompt=None, mask=mask), "row 0: prompt must be text"),
        (body(photo, mask=mask, rows=limits.MAX_ROWS + 1), "the request has 17 rows"),
        (body(bomb(), mask=mask), "row 0: image is 5000x5000"),
        (body(photo, mask=mask, steps=limits.MAX_STEPS + 1), "params: steps"),
        (body(b"junk", mask=mask), "row 0: image is not an image file"),
        ({"dataframe_split": {"columns": ["prompt", "mask"], "data": [["a face", b64(mask)]]}}, "the request lacks"),
    ):
        status, got = answer(served, request)
        assert status == 400 and got["message"].startswith(reason), got
        assert "IHDR" not in got["message"] and "Failed to predict" not in got["message"], got
        assert "stack_trace" not in got and len(json.dumps(got)) < 600, got


def test_an_unexpected_failure_is_a_500_with_one_line(served, astronaut_request, monkeypatch):
    photo, mask = astronaut_request
    monkeypatch.setattr(served.unwrap_python_model(), "editor", StubEditor(RuntimeError("CUDA out of memory")))
    status, got = answer(served, body(photo, mask=mask))
    assert status == 500 and got["message"] == "row 0: the edit failed: RuntimeError: CUDA out of memory", got
    assert "stack_trace" not in got


def test_a_serving_error_keeps_its_reason_when_the_server_rewrites_it():
    from tracking.pyfunc_model import refuse

    e = refuse("row 0: no face found")
    e.message = f"Failed to predict data '{pd.DataFrame({'image': [SMALL]})}'. \nError: {e.message}"  # MLflow's
    assert e.message == str(e) == "row 0: no face found"
    assert json.loads(e.serialize_as_json())["message"] == "row 0: no face found"
    assert len(refuse("x" * 5000).message) == 1000  # a long reason is cut
