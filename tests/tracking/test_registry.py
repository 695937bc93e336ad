"""MLflow tracking, the pyfunc model and the registry gate, on real sqlite stores in temp dirs."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from stages.register import RegisterConfig
from tests.helpers import config
from tracking import registry, runs
from tracking.registry import Gate, gate

REGISTER = config("register", RegisterConfig)
RULES = Gate(**REGISTER.gate)  # the demo's gate: FID may not rise, PSNR may not drop, PickScore by 0.5 at most
NAME = REGISTER.model_name


def rules(**changes) -> Gate:
    return Gate(**{**REGISTER.gate, **changes})


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh sqlite-backed MLflow store (tracking + registry), tracking on, cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


# ------------------------------------------------------------------------------------------- gate


def test_gate_rules():
    champ = {"fid": 60.0, "psnr_bg": 33.0, "pickscore": 24.0}
    assert gate(champ, None, RULES).promote and gate(champ, None, RULES).text == "no champion yet"
    better = {"fid": 55.0, "psnr_bg": 33.5, "pickscore": 23.8}  # PickScore within the 0.5 margin
    assert gate(better, champ, RULES).promote
    worse_fid = {**better, "fid": 61.0}
    d = gate(worse_fid, champ, RULES)
    assert not d.promote and "FID 61 vs champion 60 (fails" in d.text
    assert gate(worse_fid, champ, rules(fid_max_increase=2.0)).promote
    assert not gate({**better, "pickscore": 23.0}, champ, RULES).promote
    assert not gate({**better, "psnr_bg": 32.9}, champ, RULES).promote


def test_gate_compares_only_metrics_of_the_same_definitions():
    champ = {"fid": 60.0, "psnr_bg": 65.0, "pickscore": 24.0, "definitions": "1: outside dilated M"}
    now = {"fid": 55.0, "psnr_bg": 38.0, "pickscore": 25.0, "definitions": "2: outside M"}
    d = gate(now, champ, RULES)
    assert not d.promote and "not comparable" in d.text and "outside dilated M" in d.text
    assert gate(now, {**champ, "definitions": "2: outside M", "psnr_bg": 37.0}, RULES).promote


def test_gate_never_counts_an_unavailable_metric_as_passed():
    champ = {"fid": "unavailable", "psnr_bg": 30.0, "pickscore": "unavailable"}
    d = gate({"fid": "unavailable", "psnr_bg": 31.0, "pickscore": "unavailable"}, champ, RULES)
    assert d.promote and "FID not checked (unavailable)" in d.text
    nothing = gate({"fid": "unavailable"}, {"fid": 60.0}, RULES)
    assert not nothing.promote and "no metric could be compared" in nothing.text
    assert gate({"psnr_bg": "inf"}, {"psnr_bg": 40.0}, RULES).promote  # exact background beats any finite PSNR


# --------------------------------------------------------------------------------- pyfunc + registry


@pytest.fixture
def logged(store, tiny_artifact):
    run = runs.Tracker().start(artifact_version=tiny_artifact.version, run_name="test", params={"train": {"lr": 1}})
    run.end()
    assert not run.disabled
    uri = registry.log_model(tiny_artifact.version, tiny_artifact.path)  # into the run train opened
    assert uri and registry.model_uri_of(tiny_artifact.version) == uri
    assert registry.log_model(tiny_artifact.version, tiny_artifact.path) == uri  # once per artifact version
    return uri


def photo_and_mask(h=80, w=96):
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[20:60, 30:70] = 255
    enc = []
    for arr in (img, mask):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        enc.append(buf.getvalue())
    return img, mask, enc


def test_pyfunc_model_loads_and_edits_a_photo(logged):
    import io

    import mlflow
    from PIL import Image

    img, mask, (img_png, mask_png) = photo_and_mask()
    model = mlflow.pyfunc.load_model(logged)
    out = model.predict(
        pd.DataFrame({"image": [img_png], "prompt": ["a smiling man"], "mask": [mask_png]}),
        params={"steps": 2, "seed": 1},
    )
    edited = np.asarray(Image.open(io.BytesIO(out["image"][0])))
    assert edited.shape == img.shape and not np.array_equal(edited, img)
    prov = json.loads(out["provenance"][0])
    assert prov["prompt"] == "a smiling man" and prov["steps"] == 2
    x0, y0, x1, y1 = prov["region"]
    outside = np.ones(mask.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(edited[outside], img[outside])  # nothing outside the edited square changed
    assert model.metadata.signature is not None


def test_pyfunc_model_without_a_mask_uses_the_face_mesh_it_carries(logged, monkeypatch, tmp_path):
    """No mask and no BiSeNet weights: the served model finds the astronaut's face with the MediaPipe files logged
    beside it (not the cache: that is emptied here) and edits it with the face mesh's mask."""
    import io

    import mlflow
    from PIL import Image

    from tests.editing import astronaut

    monkeypatch.setenv("FACEPAINT_FACE_MODELS", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("facepaint.editing.helper.default_bisenet_path", lambda: tmp_path / "absent.pth")
    buf = io.BytesIO()
    Image.fromarray(astronaut.photo()).save(buf, format="PNG")
    model = mlflow.pyfunc.load_model(logged)
    out = model.predict(pd.DataFrame({"image": [buf.getvalue()], "prompt": ["a smiling woman"]}), params={"steps": 2})
    prov = json.loads(out["provenance"][0])
    assert prov["mask"] == "mesh" and prov["detector"] == "mediapipe-blazeface"
    assert not (tmp_path / "empty-cache").exists()  # nothing was fetched


def test_a_request_is_read_by_the_one_parser_of_user_values():
    """`read_request` checks and decodes a request without the model: the rows, and the params as
    (SamplingOptions, EditChoices) read by parse_edit_options (text as a command line sends it, "false" is False);
    a bad param, a missing column or an image that does not decode is refused naming it."""
    from mlflow.exceptions import MlflowException

    from facepaint.editing.editor import EditChoices
    from facepaint.method.options import SamplingOptions
    from tracking.pyfunc_model import read_request

    img, mask, (img_png, mask_png) = photo_and_mask()
    frame = pd.DataFrame({"image": [img_png, img_png], "prompt": ["a man", "a woman"], "mask": [mask_png, None]})
    params = {"steps": "3", "sigma": 8, "scheduler": "dpm", "seed": "5", "blend": "false", "faces": "largest"}
    rows, (options, choices) = read_request(frame, params)
    assert options == SamplingOptions(steps=3, sigma=8.0, scheduler="dpm")
    assert choices == EditChoices(seed=5, blend=False, faces="largest")
    assert [(image, prompt) for image, prompt, _ in rows] == [(img_png, "a man"), (img_png, "a woman")]
    assert np.array_equal(rows[0][2] > 0.5, mask > 0) and rows[1][2] is None
    assert read_request(frame[["image", "prompt"]])[1] == (SamplingOptions(), EditChoices())  # the defaults
    for bad_frame, bad_params, reason in (
        (frame, {"steps": "2.5"}, "params: steps must be a whole number"),
        (frame, {"min_face": -1}, "params: min_face must be a number from 0"),
        (frame, {"scheduler": "euler"}, "params: scheduler must be one of"),
        (frame[["prompt"]], None, "lacks the column(s) ['image']"),
        (pd.DataFrame({"image": [b"junk"], "prompt": ["a"]}), None, "row 0:"),
    ):
        with pytest.raises(MlflowException, match=re.escape(reason)):
            read_request(bad_frame, bad_params)


def test_registry_promotes_a_better_model_and_refuses_a_worse_one(logged, store):
    import shutil

    import mlflow
    from mlflow import MlflowClient

    # three models (a model is registered once: tests/test_faults.py), the others copies of the logged one
    local = mlflow.artifacts.download_artifacts(logged)
    worse_model, better_model = (str(shutil.copytree(local, store / name)) for name in ("worse", "better"))
    first = registry.register(logged, {"fid": "unavailable", "psnr_bg": 30.0, "pickscore": "unavailable"}, RULES, NAME)
    assert first["promoted"] and first["champion"] == first["version"] == 1
    worse = registry.register(
        worse_model, {"fid": "unavailable", "psnr_bg": 29.0, "pickscore": "unavailable"}, RULES, NAME
    )
    assert not worse["promoted"] and worse["champion"] == 1 and worse["version"] == 2
    better = registry.register(
        better_model, {"fid": "unavailable", "psnr_bg": 31.0, "pickscore": "unavailable"}, RULES, NAME
    )
    assert better["promoted"] and better["previous_champion"] == 1
    client = MlflowClient()
    assert int(client.get_model_version_by_alias("facepaint", "champion").version) == 3
    assert int(client.get_model_version_by_alias("facepaint", "challenger").version) == 3
    refused = client.get_model_version("facepaint", "2")
    assert refused.tags["facepaint.gate"] == "refused" and "fails" in refused.tags["facepaint.gate_reason"]
    assert json.loads(refused.tags["facepaint.metrics"])["psnr_bg"] == 29.0


def test_edit_command_serves_the_champion(logged, tiny_artifact, tmp_path):
    from PIL import Image

    from facepaint.apps.cli import main

    registry.register(logged, {"psnr_bg": 30.0}, RULES, NAME)
    img, mask, _ = photo_and_mask()
    Image.fromarray(img).save(tmp_path / "p.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    code = main(
        [
            "edit",
            str(tmp_path / "p.png"),
            "--prompt",
            "a man",
            "--out",
            str(tmp_path / "o.png"),
            "--model",
            "models:/facepaint@champion",
            "--mask",
            str(tmp_path / "m.png"),
            "--steps",
            "2",
        ]
    )
    assert code == 0
    from facepaint.editing.provenance import read_provenance

    assert read_provenance(tmp_path / "o.png")["artifact_version"] == tiny_artifact.version


def test_the_app_offers_the_registered_releases(logged, tiny_artifact, tmp_path, monkeypatch):
    from pathlib import Path

    from PIL import Image

    from facepaint.apps.web import App, AppConfig, EditRequest

    registry.register(logged, {"psnr_bg": 30.0}, RULES, NAME)
    img, mask, _ = photo_and_mask()
    Image.fromarray(img).save(tmp_path / "p.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    app = App(AppConfig(model=str(tiny_artifact.path), examples=None, workdir=str(tmp_path / "out")))
    champion, challenger = f"models:/{NAME}@champion", f"models:/{NAME}@challenger"
    assert app.choices == [str(tiny_artifact.path), champion, challenger], app.releases_note
    assert "2 registered release(s)" in app.releases_note

    def edit(model):
        args = (tmp_path / "p.png", None, tmp_path / "m.png", "all", 64, "a man", "", 3, 2, 7.5, 1.0, True, False)
        return app.edit(EditRequest(*args, start=None, model=model))

    _, png, provenance, _ = edit(champion)
    assert provenance["release"] == champion and provenance["artifact_version"] == tiny_artifact.version
    assert Path(app.model_dir(champion)) != Path(tiny_artifact.path)  # fetched from the store
    assert "release" not in edit(None)[2]  # --model's own directory
    with pytest.raises(ValueError, match="not offered by this app"):  # an API client cannot load any path
        edit(str(tmp_path))
    # no store: only --model, and asking does not create one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    bare = App(AppConfig(model=str(tiny_artifact.path), examples=None, workdir=str(tmp_path / "out2")))
    assert bare.choices == [str(tiny_artifact.path)] and "no registered releases" in bare.releases_note
    assert not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------------------------ never fatal


def test_unreachable_store_warns_once_and_register_fails(tmp_path, monkeypatch, tiny_artifact):
    """Tracking goes on without the store (train, evaluate); register, whose job is the store, fails."""
    from stages import register as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    (tmp_path / "blocker").write_text("a file where the store's folder would have to be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'blocker' / 'mlflow.db'}")
    with pytest.warns(UserWarning, match="MLflow tracking .* failed") as caught:
        run = runs.Tracker().start(artifact_version="x")
        run.metrics({"a": 1.0})
        run.end()
    said = [str(w.message) for w in caught if "MLflow tracking" in str(w.message)]
    assert run.disabled and len(said) == 2  # the failure, once, then what was not recorded
    assert "failed (start run" in said[0] and "not recorded: start run; log metrics" in said[1]
    (tmp_path / "metrics.json").write_text(
        json.dumps({"artifact": tiny_artifact.version, "methods": {"ours": {"psnr_bg": 30.0}}})
    )
    with pytest.raises(stage.RegistryError, match="blocker.*not registered as facepaint.*File exists"):
        stage.run(REGISTER, tiny_artifact.path, metrics=tmp_path / "metrics.json", out=tmp_path / "register.json")
    assert not (tmp_path / "register.json").exists()


def test_versions_name_the_commit_and_dvc_hashes(tmp_path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  split:\n    cmd: x\n    outs:\n    - path: data/split.parquet\n      md5: abc123\n"
    )
    tags = runs.code_and_data_versions(tmp_path)
    assert tags["dvc.split.outs.data/split.parquet"] == "abc123"


# ------------------------------------------------------------------------------------------ serving


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(logged, store):
    """`mlflow models serve -m models:/facepaint@champion` (the current environment: --env-manager local) on
    a free local port, with the champion of a registered demo model."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    registry.register(logged, {"psnr_bg": 30.0}, RULES, NAME)
    port = free_port()
    log = open(store / "serve.log", "w")
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion"]
    cmd += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{url}/ping", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"mlflow models serve did not come up:\n{(store / 'serve.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def post(url: str, body) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_mlflow_serves_the_champion_over_http(served):
    """The public HTTP interface (docs/operations.md, serving): a real POST edits a photo; malformed requests get a 4xx
    with a message."""
    import base64
    import io

    from PIL import Image

    img, mask, (img_png, mask_png) = photo_and_mask()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    request = {
        "dataframe_split": {"columns": ["image", "prompt", "mask"], "data": [[b64(img_png), "a man", b64(mask_png)]]},
        "params": {"steps": 2, "seed": 3},
    }
    status, body = post(served, request)
    assert status == 200, body
    row = body["predictions"][0]
    edited = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["image"]))))
    prov = json.loads(row["provenance"])
    assert edited.shape == img.shape and prov["prompt"] == "a man" and prov["steps"] == 2 and prov["seed"] == 3
    assert json.loads(Image.open(io.BytesIO(base64.b64decode(row["image"]))).text["facepaint"]) == prov
    x0, y0, x1, y1 = prov["region"]
    outside = np.ones(mask.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(edited[outside], img[outside])

    for bad, expect in (
        (b"{not json", ""),
        ({"dataframe_split": {"columns": ["prompt"], "data": [["a man"]]}}, "image"),
        ({"dataframe_split": {"columns": ["image", "prompt"], "data": [[b64(b"junk"), "a"]]}}, "row 0"),
        ({**request, "params": {"steps": 0}}, "steps"),
    ):
        status, body = post(served, bad)
        assert 400 <= status < 500, (bad, status, body)
        assert body.get("message") and expect in body["message"], body


def test_the_logged_model_names_its_pinned_requirements(logged):
    """Explicit pip requirements (no inference in a subprocess, which timed out at full size and left
    `cloudpickle` alone): the project's runtime dependencies at the installed versions."""
    from importlib.metadata import version

    import mlflow

    path = mlflow.pyfunc.get_model_dependencies(logged)
    reqs = open(path).read().split()
    for name in ("torch", "diffusers", "mlflow", "opencv-python"):
        assert f"{name}=={version(name)}" in reqs, (name, reqs)


def test_logging_checks_the_input_example_without_the_model(store, tiny_artifact, monkeypatch):
    """MLflow would load the model and edit the example (minutes at full size); the example is checked as a
    request instead (parsed, schema enforced, decoded), with no model loaded, and a bad one is an error."""
    from pathlib import Path

    import mlflow

    from facepaint.editing.editor import FaceEditor

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded to check the input example")

    monkeypatch.setattr(FaceEditor, "from_artifact", no_model)
    runs.Tracker().start(artifact_version=tiny_artifact.version, run_name="test").end()
    uri = registry.log_model(tiny_artifact.version, tiny_artifact.path)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    example = json.loads((local / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image", "prompt", "mask"]
    # a broken example (its image no PNG) fails the log, where MLflow itself would only warn
    monkeypatch.setattr(registry, "_example_png", lambda mask=False: b"\x89PNG broken")
    with mlflow.start_run():
        with pytest.raises(RuntimeError, match="input example was not checked.*row 0"):
            registry.log_pyfunc(tiny_artifact.path)
