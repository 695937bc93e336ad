"""The base model's safety checker on every edit (facepaint.editing.safety): a tiny StableDiffusionSafetyChecker built
from a tiny CLIPConfig (random weights), saved beside a tiny SD1.5 inpainting directory as SD1.5 ships it, and
loaded by `FaceEditor.from_artifact` through the real loading code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from facepaint.apps.cli import main
from facepaint.editing.editor import EditResult, FaceEditor
from facepaint.editing.provenance import read_provenance
from facepaint.editing.safety import NOT_SHIPPED, OFF, RAN, SafetyChecker, UnsafeResultError
from facepaint.method.artifact import save_artifact
from facepaint.method.models import (
    ModelConfig,
    ModelLoadError,
    random_safety_checker,
    save_pipeline,
    save_safety_checker,
    tiny_components,
)
from tests.helpers import box_mask, config, random_adapter, textured, tiny_conditions

RES = 64
FAST = dict(steps=2, seed=0)
FLAG_ALL = -2.0  # a concept threshold below any cosine similarity: every image is flagged


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny SD1.5 inpainting directory in the diffusers layout, without a safety checker."""
    return save_pipeline(tiny_components(seed=0), tmp_path_factory.mktemp("base") / "sd")


def with_checker(base_dir, where, threshold=None):
    """A copy of `base_dir` with a tiny safety checker (threshold None: it flags nothing)."""
    shutil.copytree(base_dir, where)
    return save_safety_checker(*random_safety_checker(0, threshold=threshold), where)


def artifact_on(model_dir, where):
    """A trained-looking tiny artifact whose base model is the directory `model_dir` (model.source: pretrained)."""
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    model = config("model", ModelConfig, source="pretrained", pretrained=str(model_dir))
    conditions = tiny_conditions(RES, model=model)
    return save_artifact(where / "model", comps.unet, random_adapter(comps), conditions).path


@pytest.fixture(scope="module")
def artifacts(base_dir, tmp_path_factory):
    """{"none": the base model ships no checker, "pass": a checker that flags nothing, "flag": one that flags
    everything}: artifact directories."""
    root = tmp_path_factory.mktemp("artifacts")
    dirs = {
        "none": base_dir,
        "pass": with_checker(base_dir, root / "pass-sd"),
        "flag": with_checker(base_dir, root / "flag-sd", threshold=FLAG_ALL),
    }
    return {k: artifact_on(d, root / k) for k, d in dirs.items()}


def load(artifact, **options) -> FaceEditor:
    return FaceEditor.from_artifact(artifact, device="cpu", detector="opencv", **options)


PHOTO = textured(80, 96, seed=3)
MASK = box_mask(80, 96, 20, 60, 28, 68)


def spy(monkeypatch, checker: SafetyChecker) -> list[int]:
    """The batch size of every forward of the checker's model (the real forward runs)."""
    calls, forward = [], checker.model.forward

    def counting(clip_input, images):
        calls.append(clip_input.shape[0])
        return forward(clip_input=clip_input, images=images)

    monkeypatch.setattr(checker.model, "forward", counting)
    return calls


def test_the_checker_runs_on_every_edit_and_the_provenance_says_so(artifacts, monkeypatch):
    editor = load(artifacts["pass"])
    assert editor.safety is not None and editor.safety_state == RAN == editor.describe()["safety_checker"]
    assert editor.safety.model.concept_embeds_weights.dtype == torch.float32  # the editor's dtype (fp32 on the CPU)
    calls = spy(monkeypatch, editor.safety)
    result = editor.edit(PHOTO, "a smiling face", mask=MASK, **FAST)
    assert calls == [1] and result.provenance["safety_checker"] == "ran"
    results = editor.edit_batch(
        [PHOTO, textured(64, 64, seed=4)], "a face", masks=[MASK, box_mask(64, 64, 8, 56, 8, 56)], **FAST
    )
    assert calls == [1, 2]  # one forward for every face of the batch
    assert [r.provenance["safety_checker"] for r in results] == ["ran", "ran"]


def test_a_flagged_result_is_refused_naming_the_photo_and_how_to_turn_the_check_off(artifacts, tmp_path):
    editor = load(artifacts["flag"])
    Image.fromarray(PHOTO).save(tmp_path / "me.png")
    with pytest.raises(UnsafeResultError) as caught:
        editor.edit(tmp_path / "me.png", "a face", mask=MASK, **FAST)
    message = str(caught.value)
    assert f"{tmp_path / 'me.png'} (the masked region)" in message and "safety checker flagged" in message
    assert "safety_checker=False" in message and "--no-safety-checker" in message
    assert caught.value.flagged == [(0, [None])] and caught.value.results == [None]


def test_a_batch_withholds_only_the_flagged_photo(artifacts):
    """One concept embedding is set to the difference of the two crops' image embeddings and its threshold to 0:
    the second photo is flagged, the error names it, and carries the first photo's result."""
    editor = load(artifacts["pass"])
    photos, masks = [PHOTO, textured(64, 64, seed=4)], [MASK, box_mask(64, 64, 8, 56, 8, 56)]
    crops = []
    original = editor.safety.flags
    editor.safety.flags = lambda images: crops.extend(images) or original(images)  # records the crops checked
    editor.edit_batch(photos, "a face", masks=masks, **FAST)
    del editor.safety.flags
    model = editor.safety.model
    with torch.no_grad():
        pixels = editor.safety.processor([Image.fromarray(c) for c in crops], return_tensors="pt").pixel_values
        embeds = torch.nn.functional.normalize(model.visual_projection(model.vision_model(pixels)[1]))
        model.concept_embeds[0] = embeds[1] - embeds[0]
        model.concept_embeds_weights.fill_(2.0)  # no other concept can fire
        model.special_care_embeds_weights.fill_(2.0)
        model.concept_embeds_weights[0] = 0.0
        cos = embeds @ torch.nn.functional.normalize(model.concept_embeds[:1]).T
        assert cos[1] > 0.002 and cos[0] < 0, cos  # clear of diffusers' rounding of the score to 3 decimals
    with pytest.raises(UnsafeResultError, match=r"image 1 of 2, <array> \(the masked region\)") as caught:
        editor.edit_batch(photos, "a face", masks=masks, **FAST)
    assert caught.value.flagged == [(1, [None])]
    kept = caught.value.results
    assert kept[1] is None and isinstance(kept[0], EditResult)
    assert kept[0].image.shape == photos[0].shape and kept[0].provenance["safety_checker"] == RAN


def test_facepaint_edit_exits_non_zero_and_writes_nothing(artifacts, tmp_path, capsys):
    Image.fromarray(PHOTO).save(tmp_path / "me.png")
    Image.fromarray(MASK.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"an earlier result")
    args = ["edit", str(tmp_path / "me.png"), "--prompt", "a face", "--mask", str(tmp_path / "mask.png")]
    args += ["--model", str(artifacts["flag"]), "--detector", "opencv", "--steps", "2", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: the base model's safety checker flagged the edited result of" in err and "Traceback" not in err
    assert out.read_bytes() == b"an earlier result"  # left as it was
    assert not (tmp_path / "new.png").exists() and main([*args, "--out", str(tmp_path / "new.png")]) == 1
    assert not (tmp_path / "new.png").exists() and not list(tmp_path.glob("*.tmp*"))
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--no-safety-checker"]) == 0
    assert "warning: the base model's safety checker is off" in capsys.readouterr().err
    assert read_provenance(out)["safety_checker"] == OFF


def test_the_pyfunc_model_refuses_a_flagged_result_with_a_400(artifacts):
    import io

    import pandas as pd
    from mlflow.exceptions import MlflowException

    from tracking.pyfunc_model import FacepaintModel

    model = FacepaintModel()
    model.editor = load(artifacts["flag"])
    png, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(PHOTO).save(png, format="PNG")
    Image.fromarray(MASK.astype(np.uint8) * 255).save(mask, format="PNG")
    frame = pd.DataFrame({"image": [png.getvalue()], "prompt": ["a face"], "mask": [mask.getvalue()]})
    with pytest.raises(MlflowException, match="row 0: the base model's safety checker flagged") as caught:
        model.predict(None, frame, params={"steps": 2})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE" and caught.value.get_http_status_code() == 400


def test_the_app_says_why_in_the_page_and_writes_no_png(artifacts, tmp_path):
    from facepaint.apps.web import USER_ERRORS, App, AppConfig, EditRequest

    app = App(AppConfig(str(artifacts["flag"]), examples=None, workdir=str(tmp_path / "work"), releases=False))
    Image.fromarray(PHOTO).save(tmp_path / "me.png")
    Image.fromarray(MASK.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    request = EditRequest(
        tmp_path / "me.png", None, tmp_path / "mask.png", "all", 64, "a face", "", 0, 2, 7.5, 1, True, False
    )
    with pytest.raises(USER_ERRORS, match=r"edited result of me\.png \(the masked region\)"):  # a message, no trace
        app.edit(request)
    assert not list((tmp_path / "work").rglob("*.png"))
    off = App(
        AppConfig(
            str(artifacts["flag"]), examples=None, workdir=str(tmp_path / "w2"), releases=False, safety_checker=False
        )
    )
    assert off.edit(request)[2]["safety_checker"] == OFF


def test_turned_off_the_edit_is_the_same_and_says_off(artifacts):
    on = load(artifacts["pass"]).edit(PHOTO, "a face", mask=MASK, **FAST)
    with pytest.warns(UserWarning, match="safety checker is off"):
        editor = load(artifacts["flag"], safety_checker=False)
    assert editor.safety is None and editor.safety_state == OFF
    result = editor.edit(PHOTO, "a face", mask=MASK, **FAST)
    assert result.provenance["safety_checker"] == "off"
    assert np.array_equal(result.image, on.image)  # the check changes nothing in a result it passes


def test_a_model_without_a_checker_edits_and_says_not_shipped(artifacts, tiny_artifact):
    for artifact in (artifacts["none"], tiny_artifact.path):  # a directory without one; the tiny random model
        editor = load(artifact)
        assert editor.safety is None
        result = editor.edit(PHOTO, "a face", mask=MASK, **FAST)
        assert result.provenance["safety_checker"] == NOT_SHIPPED == "not shipped with the model"


def test_checker_weights_load_from_safetensors_only(artifacts, base_dir, tmp_path, monkeypatch):
    """A checker saved only as a pickle (pytorch_model.bin) is refused with a message, never unpickled."""
    sd = with_checker(base_dir, tmp_path / "sd")
    weights = sd / "safety_checker" / "model.safetensors"
    checker, _ = random_safety_checker(0)
    torch.save(checker.state_dict(), sd / "safety_checker" / "pytorch_model.bin")
    weights.unlink()
    artifact = artifact_on(sd, tmp_path)

    def no_pickles(*args, **kwargs):
        raise AssertionError("torch.load called: a pickle would be loaded")

    monkeypatch.setattr(torch, "load", no_pickles)
    with pytest.raises(ModelLoadError, match="safety checker.*safetensors.*--no-safety-checker"):
        load(artifact)
    with pytest.warns(UserWarning):
        assert load(artifact, safety_checker=False).safety_state == OFF  # off: not even loaded
    shutil.rmtree(sd / "feature_extractor")
    with pytest.raises(ModelLoadError, match="no feature_extractor/"):
        load(artifact)
