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
    off = gate({"fid": "off in the demo profile", "psnr_bg": 31.0}, {"fid": 50.0, "psnr_bg": 30.0}, RULES)
    assert off.promote and "FID not checked (off)" in off.text  # switched off by the settings, not missing


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

    from tests.method import astronaut

    monkeypatch.setenv("FACEPAINT_FACE_MODELS", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("facepaint.method.face_helper.default_bisenet_path", lambda: tmp_path / "absent.pth")
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
    assert refused.tags["metric.psnr_bg"] == "29.0" and refused.tags["metric.fid"] == "unavailable"
    assert "facepaint.metrics" not in refused.tags  # no JSON blob: one tag per metric
    assert "not promoted (the champion stays version 1)" in refused.description
    # champion and challenger are one version: one release, labelled with both aliases
    (release,) = registry.releases()
    assert (release.version, release.aliases, release.latest) == (3, ("champion", "challenger"), True)
    assert release.uri == "models:/facepaint@champion"


def test_a_registered_version_reads_on_its_own(logged, store, tiny_artifact):
    """The version page: a description (what model, from which base, by which run, the headline metrics as a
    table, the gate's decision) and one tag per metric; the registered model is described too."""
    from mlflow import MlflowClient

    metrics = {"fid": "unavailable", "psnr_bg": 30.0, "psnr_bg_std": 1.25, "pickscore": "unavailable"}
    registry.register(logged, {**metrics, "definitions": "2: outside M"}, RULES, NAME)
    client = MlflowClient()
    version = client.get_model_version(NAME, "1")
    text = version.description
    assert text.startswith(f"{NAME} version 1 (artifact {tiny_artifact.version}, facepaint's text-driven face")
    assert "- **Trained from:** the tiny random model (`tiny-random(seed=0)`" in text
    assert f"(`{version.run_id}`)" in text and "- **Gate:** promoted to champion: no champion yet" in text
    assert "| PSNR dB, background outside M (higher is better) | 30 ± 1.25 |" in text
    assert "| FID (lower is better) | unavailable |" in text and "Definitions: 2: outside M." in text
    assert version.tags["metric.psnr_bg"] == "30.0" and version.tags[runs.ARTIFACT_TAG] == tiny_artifact.version
    assert "champion" in client.get_registered_model(NAME).description


def test_describe_names_the_base_model_and_the_training_data():
    info = {
        "version": "842615176c7c",
        "conditions": {"model": {"source": "pretrained", "pretrained": "org/sd-inpainting", "revision": "r1"}},
        "data": {"version": "26485566dc409dd9", "images": 40},
        "steps": 30,
        "final_loss": 0.23221459984779358,
    }
    metrics = {"psnr_bg": 38.09435666704747, "seconds_per_edit": 0.599, "clock": "cpu", "peak_mem_mib": None}
    text = registry.describe("facepaint", 4, metrics, RULES, registry.Decision(False, ["FID fails"]), "2", info)
    assert "- **Trained from:** `org/sd-inpainting` at revision `r1`" in text
    assert "- **Training data:** version `26485566dc409dd9` (40 images); 30 steps, final loss 0.2322" in text
    assert "- **Gate:** not promoted (the champion stays version 2): FID fails" in text
    assert "| PSNR dB, background outside M (higher is better) | 38.09 |" in text
    assert "| seconds per edit | 0.599 (cpu) |" in text and "| peak GPU memory MiB | n/a |" in text


def test_the_gate_reads_a_champion_registered_before_the_metric_tags(logged, store):
    """A champion registered by the earlier code has its metrics in one JSON tag: the gate still compares with
    them."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    registry.register(logged, {"psnr_bg": 30.0}, RULES, NAME)
    client = MlflowClient()
    for key in [k for k in client.get_model_version(NAME, "1").tags if k.startswith("metric.")]:
        client.delete_model_version_tag(NAME, "1", key)
    client.set_model_version_tag(NAME, "1", "facepaint.metrics", json.dumps({"psnr_bg": 31.0}))
    other = str(shutil.copytree(mlflow.artifacts.download_artifacts(logged), store / "other"))
    outcome = registry.register(other, {"psnr_bg": 30.5}, RULES, NAME)
    assert not outcome["promoted"] and "background PSNR 30.5 vs champion 31" in outcome["reason"]


def test_the_releases_list_each_version_once_with_its_aliases(logged, store, tiny_artifact):
    """champion and challenger on one version: one release; on two: two, the champion first. The app's label
    names the version and its other aliases, and resolves as the release's URI."""
    import shutil

    import mlflow

    from facepaint.apps import releases as app_releases

    registry.register(logged, {"psnr_bg": 30.0}, RULES, NAME)
    (one,) = registry.releases()
    art = tiny_artifact.version
    assert (one.version, one.aliases, one.latest, one.artifact) == (1, ("champion", "challenger"), True, art)
    label = app_releases.label(one)
    assert label == f"models:/facepaint@champion (version 1, the latest, artifact {art}; also challenger)"
    assert app_releases.release_uri(label) == "models:/facepaint@champion"
    assert app_releases.release_uri("data/model") == "data/model"
    worse = str(shutil.copytree(mlflow.artifacts.download_artifacts(logged), store / "worse"))
    registry.register(worse, {"psnr_bg": 29.0}, RULES, NAME)  # refused: challenger moves to version 2
    found, note = app_releases.releases()
    assert found == [
        f"models:/facepaint@champion (version 1, artifact {art})",
        f"models:/facepaint@challenger (version 2, the latest, artifact {art})",
    ], note
    assert app_releases.resolve(found[0]) == app_releases.resolve("models:/facepaint@champion")


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
    # champion and challenger are version 1: offered once, labelled with both aliases
    champion = f"models:/{NAME}@champion (version 1, the latest, artifact {tiny_artifact.version}; also challenger)"
    assert app.choices == [str(tiny_artifact.path), champion], app.releases_note
    assert "1 registered release(s)" in app.releases_note

    def edit(model):
        args = (tmp_path / "p.png", None, tmp_path / "m.png", "all", 64, "a man", "", 3, 2, 7.5, 1.0, True, False)
        return app.edit(EditRequest(*args, start=None, model=model))

    _, png, provenance, _ = edit(champion)
    assert provenance["release"] == f"models:/{NAME}@champion"  # the URI, not the page's label
    assert provenance["artifact_version"] == tiny_artifact.version
    assert Path(app.model_dir(champion)) != Path(tiny_artifact.path)  # fetched from the store
    assert app.model_dir(f"models:/{NAME}@challenger") == app.model_dir(champion)  # the URI of an alias it lists
    assert "release" not in edit(None)[2]  # --model's own directory
    with pytest.raises(ValueError, match="not offered by this app"):  # an API client cannot load any path
        edit(str(tmp_path))
    # --model naming that release (by either alias): offered once, by its label, and chosen
    for uri in (f"models:/{NAME}@champion", f"models:/{NAME}@challenger"):
        served = App(AppConfig(model=uri, examples=None, workdir=str(tmp_path / "out3")))
        assert served.choices == [champion], (uri, served.choices)
        assert served.model_dir(None) == served.model_dir(uri) == served.model_dir(champion) == served.model
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
    import hashlib

    lock = "schema: '2.0'\nstages:\n  split:\n    cmd: x\n    outs:\n    - path: data/split.parquet\n"
    lock += "      md5: abc123\n"
    (tmp_path / "dvc.lock").write_text(lock)
    tags = runs.code_and_data_versions(tmp_path)
    assert tags == {"dvc.lock_md5": hashlib.md5(lock.encode()).hexdigest()}  # not a git tree: no commit
    record = runs.lock_record(tmp_path)
    assert record["md5"] == tags["dvc.lock_md5"]
    assert record["stages"]["split"]["outs"] == [{"path": "data/split.parquet", "md5": "abc123"}]
    assert runs.lock_record(tmp_path / "elsewhere") is None


def test_a_tree_changed_only_by_dvc_repro_is_not_dirty(tmp_path):
    """After `dvc repro` on another machine, dvc.lock and the outputs dvc.yaml declares differ from the commit
    (the CPU's floats): that is not a dirty tree; a changed setting or code file, staged or not, is."""
    import subprocess

    import yaml

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    spec = {
        "stages": {
            "train": {
                "cmd": "x",
                "outs": ["data/model"],
                "metrics": [{"data/train/metrics.json": {}}],
                "plots": [{"data/train/plots": {"cache": False}}],
            }
        },
        "plots": ["data/evaluate/plots"],
    }
    files = {
        "dvc.yaml": yaml.safe_dump(spec),
        "dvc.lock": "a",
        "params.yaml": "a: 1",
        "code.py": "x = 1",
        "data/train/metrics.json": "{}",
        "data/train/plots/loss.png": "p",
        "data/evaluate/plots/a.png": "p",
        "data/modelling.txt": "not an output",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    assert runs.code_and_data_versions(tmp_path)["git.dirty"] == "false"
    for name in ("dvc.lock", "data/train/metrics.json", "data/train/plots/loss.png", "data/evaluate/plots/a.png"):
        (tmp_path / name).write_text("after repro")
    tags = runs.code_and_data_versions(tmp_path)
    assert tags["git.dirty"] == "false" and len(tags["git.commit"]) == 40
    for name in ("params.yaml", "data/modelling.txt"):  # a setting; a file whose name only starts like an out's
        (tmp_path / name).write_text("changed")
        assert runs.code_and_data_versions(tmp_path)["git.dirty"] == "true", name
        git("checkout", "--", name)
    git("mv", "code.py", "data/train/plots/code.py")  # a rename into an output folder: its source changed
    assert runs.code_and_data_versions(tmp_path)["git.dirty"] == "true"


def old_dvc_tags(lock: dict) -> dict[str, str]:
    """The tags runs.code_and_data_versions set before (one per dep and out of every stage: ~205 for this
    project's dvc.lock), to check that the artifact holds all they held."""
    return {
        f"dvc.{stage}.{kind}.{item['path']}": item["md5"]
        for stage, entry in lock["stages"].items()
        for kind in ("deps", "outs")
        for item in entry.get(kind, [])
        if "md5" in item
    }


def test_a_run_shows_its_metrics_not_hundreds_of_hash_tags(store):
    """The run page lists tags before metrics: a run has a few tags (the commit, the dvc.lock digest, the
    artifact version) and every hash of dvc.lock in one artifact, dvc/lock.json, with all that the per-file
    tags held (the project's own dvc.lock)."""
    import hashlib
    import shutil

    import mlflow
    import yaml

    from tests.conftest import REPO

    shutil.copy(REPO / "dvc.lock", store / "dvc.lock")
    before = old_dvc_tags(yaml.safe_load((store / "dvc.lock").read_text()))
    assert len(before) > 100  # what the run page used to list before its metrics
    run = runs.Tracker().start(artifact_version="a1", run_name="t", params={"train": {"lr": 1}})
    run.metrics({"eval": {"ours": {"psnr_bg": 38.1}}})
    run.end()
    got = mlflow.get_run(run.run_id)
    shown = {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.")}  # the UI hides mlflow.*
    assert set(shown) <= {"git.commit", "git.dirty", "dvc.lock_md5", runs.ARTIFACT_TAG}, shown
    assert shown["dvc.lock_md5"] == hashlib.md5((store / "dvc.lock").read_bytes()).hexdigest()
    assert got.data.metrics == {"eval.ours.psnr_bg": 38.1} and got.data.params == {"train.lr": "1"}
    logged = mlflow.artifacts.load_dict(f"runs:/{run.run_id}/{runs.LOCK_ARTIFACT}")
    assert logged["md5"] == shown["dvc.lock_md5"]
    assert old_dvc_tags(logged) == before  # every hash the tags held


def test_metric_tags_read_back_exactly_and_old_versions_still_read():
    metrics = {
        "pairs": 8,
        "psnr_bg": 38.09435666704747,
        "psnr_outside_soft": "inf",
        "psnr_outside_soft_std": None,
        "fid": "unavailable",
        "clock": "cpu",
        "definitions": "2: background = outside M",
    }
    tags = registry.metric_tags(metrics)
    assert tags["metric.psnr_bg"] == "38.09435666704747" and tags["metric.fid"] == "unavailable"
    assert tags["facepaint.metric_definitions"] == "2: background = outside M" and "metric.definitions" not in tags
    assert registry.version_metrics({**tags, "facepaint.gate": "promoted"}) == metrics
    assert registry.version_metrics({"facepaint.metrics": json.dumps(metrics)}) == metrics  # registered before
    assert registry.version_metrics({}) == {}


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


@pytest.mark.slow  # ~20 s to start `mlflow models serve`; test_serving.py checks the handler in-process
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
