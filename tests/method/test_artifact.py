import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

import facepaint.method.artifact as artifact_module
from facepaint.method.adapter import FaceAdapter
from facepaint.method.artifact import (
    ArtifactError,
    apply_artifact,
    freeze_all_but_kv,
    load_artifact,
    read_conditions,
    save_artifact,
    version_digest,
)
from facepaint.method.models import tiny_components
from tests.helpers import tiny_conditions


@pytest.fixture
def trained(tmp_path):
    """A tiny 'trained' artifact: k/v and adapter weights changed from the base."""
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    kv = freeze_all_but_kv(comps.unet)
    adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
    with torch.no_grad():
        for p in kv.values():
            p.add_(0.01)
        adapter.w2.weight.normal_()
    art = save_artifact(tmp_path / "model", comps.unet, adapter, tiny_conditions(64), extra={"steps": 5})
    return art, comps, adapter


def test_roundtrip_and_apply_restores_the_trained_weights(trained, tmp_path):
    art, comps, adapter = trained
    assert sorted(p.name for p in art.path.iterdir()) == ["adapter.safetensors", "facepaint.json", "kv.safetensors"]
    loaded = load_artifact(art.path)
    assert loaded.version == art.version and len(loaded.version) == 12
    assert loaded.conditions == tiny_conditions(64)  # everything inference needs comes back, typed
    c = loaded.conditions
    assert (c.model.source, c.resolution, c.adapter_scale, c.latent_factor) == ("tiny", 64, 0.3, 8)
    assert c.parts[0] == "skin" and c.mask_backend == "annotations" and loaded.info["steps"] == 5
    base = tiny_components(seed=0, parts=("unet", "text_encoder"))
    ad = apply_artifact(base, loaded)
    trained_unet = dict(comps.unet.named_parameters())
    for name, p in base.unet.named_parameters():
        assert torch.equal(p, trained_unet[name]), name  # k/v from the artifact, the rest is the base's
    assert torch.equal(ad.w2.weight, adapter.w2.weight) and not ad.training
    assert all(not p.requires_grad for p in ad.parameters())


def test_only_kv_is_stored(trained):
    art, comps, _ = trained
    assert all(k.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for k in art.kv)
    assert sum(v.numel() for v in art.kv.values()) < 0.05 * sum(p.numel() for p in comps.unet.parameters())


def test_bad_artifacts_are_named(trained, tmp_path):
    art, _, _ = trained
    with pytest.raises(ArtifactError, match="not a directory.*dvc repro train"):
        load_artifact(tmp_path / "nope")
    (art.path / "adapter.safetensors").unlink()
    with pytest.raises(ArtifactError, match="lacks adapter.safetensors"):
        load_artifact(art.path)


def test_corrupt_weights_and_format_are_refused(trained):
    art, _, _ = trained
    (art.path / "kv.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_artifact(art.path)


def test_future_format_is_refused(trained):
    art, _, _ = trained
    info = json.loads((art.path / "facepaint.json").read_text())
    (art.path / "facepaint.json").write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(ArtifactError, match="format 99"):
        load_artifact(art.path)


def test_artifact_from_another_base_model_does_not_apply(trained):
    art, _, _ = trained
    from diffusers import UNet2DConditionModel

    from facepaint.method.models import TINY_UNET

    other = tiny_components(seed=0, parts=("unet", "text_encoder"))
    other.unet = UNet2DConditionModel(**dict(TINY_UNET, cross_attention_dim=48))
    with pytest.raises(ArtifactError, match="shape|do not fit"):
        apply_artifact(other, load_artifact(art.path))


def test_incomplete_conditions_are_refused_not_filled_in(trained):
    """No fallback constants: an artifact that lacks a condition (e.g. the latent factor) is an error naming it."""
    art, _, _ = trained
    info = json.loads((art.path / "facepaint.json").read_text())
    del info["conditions"]["latent_factor"]
    (art.path / "facepaint.json").write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="conditions lacks latent_factor.*retrain"):
        load_artifact(art.path)


@pytest.mark.parametrize("fmt", [1, 2])
def test_older_formats_say_to_retrain(trained, fmt):
    """Format 2 (whose version was the weights' digest alone, and which may record a `sigma` condition) and
    format 1 are refused with the way out: retrain."""
    art, _, _ = trained
    info = json.loads((art.path / "facepaint.json").read_text())
    info["conditions"]["sigma"] = 1.0  # as format 2 could record it
    (art.path / "facepaint.json").write_text(json.dumps({**info, "format": fmt}))
    with pytest.raises(ArtifactError, match=f"format {fmt}, this facepaint reads format 3.*retrain"):
        load_artifact(art.path)


def test_version_digest_covers_the_weights_and_the_conditions(trained, tmp_path):
    """The version names the weights and the conditions: other conditions or other weights, another version;
    the same ones, the same version."""
    art, comps, adapter = trained
    again = save_artifact(tmp_path / "again", comps.unet, adapter, tiny_conditions(64), extra={"steps": 9})
    assert again.version == art.version  # provenance is not part of it
    other = save_artifact(tmp_path / "other", comps.unet, adapter, tiny_conditions(64, adapter_scale=0.5))
    assert other.conditions != art.conditions and other.version != art.version
    assert load_artifact(other.path).version == other.version
    with torch.no_grad():
        adapter.w2.weight.add_(1e-3)
    assert save_artifact(tmp_path / "changed", comps.unet, adapter, tiny_conditions(64)).version != art.version


# --------------------------------------------------------------------------- facepaint.json is not trusted


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A valid tiny artifact, saved once; each test edits a copy (`fresh`)."""
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    freeze_all_but_kv(comps.unet)
    adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
    extra = {"train": {"lr_kv": 5e-5}, "data": {"version": "26485566dc409dd9", "images": 40}, "steps": 30}
    return save_artifact(tmp_path_factory.mktemp("saved") / "model", comps.unet, adapter, tiny_conditions(64), extra)


@pytest.fixture
def fresh(saved, tmp_path, monkeypatch):
    """(a copy of `saved`, the list of weight files read): reading a weight file is recorded and fails loudly."""
    path = Path(shutil.copytree(saved.path, tmp_path / "model"))
    weights_read = []

    def no_weights(raw):
        weights_read.append(len(raw))
        raise AssertionError("the test's guard: a weight file is read")

    monkeypatch.setattr(artifact_module, "load_weights", no_weights)
    return path, weights_read


def _conditions(**changes):
    return lambda info: info["conditions"].update(changes)


def _model(**changes):
    return lambda info: info["conditions"]["model"].update(changes)


def _top(**changes):
    return lambda info: info.update(changes)


def _drop(*keys):
    def drop(info):
        *inside, last = keys
        d = info
        for k in inside:
            d = d[k]
        del d[last]

    return drop


def _text(replace):
    """An edit of facepaint.json's text (for what json.dumps would not write)."""
    replace.on_text = True
    return replace


# case: (edit of the parsed facepaint.json, or of its text, the message expected after "<file>: " or in it)
BAD = {
    "resolution 1000000": (
        _conditions(resolution=1000000),
        r"conditions\.resolution must be a whole number from 64 to 2048, got 1000000",
    ),
    "resolution 0": (
        _conditions(resolution=0),
        r"conditions\.resolution must be a whole number from 64 to 2048, got 0",
    ),
    "resolution -64": (
        _conditions(resolution=-64),
        r"conditions\.resolution must be a whole number from 64 to 2048, got -64",
    ),
    'resolution "abc"': (
        _conditions(resolution="abc"),
        r"conditions\.resolution must be a whole number from 64 to 2048, got 'abc'",
    ),
    "resolution 100 (not a multiple of 8)": (
        _conditions(resolution=100),
        r"conditions\.resolution must be a multiple of 8 \(the VAE's factor\), got 100",
    ),
    "resolution 128.0": (_conditions(resolution=128.0), r"conditions\.resolution must be a whole number .*got 128\.0"),
    "resolution true": (_conditions(resolution=True), r"conditions\.resolution must be a whole number .*got True"),
    "adapter_scale Infinity": (
        _text(lambda t: t.replace('"adapter_scale": 0.3', '"adapter_scale": Infinity')),
        r"unreadable \(conditions\.adapter_scale is Infinity, which JSON has no literal for",
    ),
    "adapter_scale -Infinity": (
        _text(lambda t: t.replace('"adapter_scale": 0.3', '"adapter_scale": -Infinity')),
        r"conditions\.adapter_scale is -Infinity",
    ),
    "adapter_scale NaN": (
        _text(lambda t: t.replace('"adapter_scale": 0.3', '"adapter_scale": NaN')),
        r"unreadable \(conditions\.adapter_scale is NaN, which JSON has no literal for",
    ),
    "adapter_scale 1e308": (
        _conditions(adapter_scale=1e308),
        r"conditions\.adapter_scale must be a number from 0 to 10, got 1e\+308",
    ),
    "adapter_scale -1": (
        _conditions(adapter_scale=-1),
        r"conditions\.adapter_scale must be a number from 0 to 10",
    ),
    'adapter_scale "0.3"': (_conditions(adapter_scale="0.3"), r"conditions\.adapter_scale must be a number .*'0\.3'"),
    "a NaN in a list": (
        _text(lambda t: t.replace('"skin"', "NaN", 1)),
        r"conditions\.parts\[0\] is NaN",
    ),
    "model as a string": (_conditions(model="tiny"), r"conditions\.model must be a mapping of .*got 'tiny'"),
    "model.seed -1": (_model(seed=-1), r"conditions\.model\.seed must be a whole number from 0 to \d+, got -1"),
    "model.source": (_model(source="pickle"), r"conditions\.model\.source must be one of .*got 'pickle'"),
    "model.revision 3": (_model(revision=3), r"conditions\.model\.revision must be a string or null, got 3"),
    "model.variant": (_model(variant="../../x"), r"conditions\.model\.variant must be null or a word like fp16"),
    "model.pretrained with a newline": (_model(pretrained="a\nb"), r"conditions\.model\.pretrained must be a name"),
    "model.pretrained empty (pretrained)": (
        _model(source="pretrained", pretrained=" "),
        r"conditions\.model\.pretrained must name the base model",
    ),
    "an unknown model key": (_model(url="http://x"), r"conditions\.model: unknown key\(s\) \['url'\]"),
    "a missing model key": (_drop("conditions", "model", "seed"), r"conditions\.model: .*missing key\(s\) \['seed'\]"),
    "parts empty": (_conditions(parts=[]), r"conditions\.parts must be a non-empty list of face parts"),
    "parts unknown": (_conditions(parts=["skin", "tail"]), r"conditions\.parts must be .*got \['skin', 'tail'\]"),
    "parts a string": (_conditions(parts="skin"), r"conditions\.parts must be a list, got 'skin'"),
    "mask_backend": (_conditions(mask_backend="sam"), r"conditions\.mask_backend must be one of .*got 'sam'"),
    "latent_factor 0": (
        _conditions(latent_factor=0),
        r"conditions\.latent_factor must be a whole number from 1 to 64",
    ),
    "latent_factor 3": (_conditions(latent_factor=3), r"conditions\.latent_factor must divide conditions\.resolution"),
    "an unknown condition": (_conditions(sigma=1.0), r"unknown key\(s\) conditions\.sigma; conditions has model, "),
    "an unknown key": (_top(resolution=1000000), r"unknown key\(s\) resolution; facepaint\.json has format, "),
    "a missing condition": (_drop("conditions", "latent_factor"), r"conditions lacks latent_factor: .*retrain"),
    "conditions missing": (_drop("conditions"), r"lacks conditions"),
    "conditions a list": (_top(conditions=[]), r"conditions must be a mapping of model, resolution"),
    "version missing": (_drop("version"), r"lacks version"),
    "version not a digest": (_top(version="latest"), r"version must be 12 hex digits .*got 'latest'"),
    "format missing": (_drop("format"), r"format None, this facepaint reads format 3"),
    "format '3'": (_top(format="3"), r"format '3', this facepaint reads format 3"),
    "steps -1": (_top(steps=-1), r"steps must be a whole number >= 0, got -1"),
    "final_loss text": (_top(final_loss="low"), r"final_loss must be a number, got 'low'"),
    "train a string": (_top(train="fast"), r"train must be a mapping, got 'fast'"),
    "data.images -1": (_top(data={"version": "x", "images": -1}), r"data\.images must be a whole number >= 0"),
    "broken JSON": (_text(lambda t: t[: len(t) // 2]), r"unreadable \(JSONDecodeError: .*line \d+ column \d+"),
    "a key given twice": (
        _text(lambda t: t.replace('"resolution": 64,', '"resolution": 64, "resolution": 1000000,')),
        r"unreadable \(ValueError: key 'resolution' given twice\)",
    ),
    "a list, not a mapping": (_text(lambda t: "[1, 2]"), r"holds list, not the artifact's description"),
    "not UTF-8": (_text(lambda t: t.replace("skin", "sk\udcffn")), r"unreadable \(UnicodeDecodeError"),
    "over 1 MiB": (_text(lambda t: t + " " * (1 << 20)), r"unreadable \(over 1048576 bytes"),
}


def _break(path: Path, edit) -> None:
    f = path / "facepaint.json"
    if getattr(edit, "on_text", False):
        f.write_bytes(edit(f.read_text()).encode("utf-8", "surrogateescape"))
    else:
        info = json.loads(f.read_text())
        edit(info)
        f.write_text(json.dumps(info, indent=2))


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_facepaint_json_is_refused_naming_the_key_before_any_weights_load(case, fresh):
    path, weights_read = fresh
    edit, said = BAD[case]
    _break(path, edit)
    for read in (load_artifact, read_conditions):
        with pytest.raises(ArtifactError) as e:
            read(path)
        message = str(e.value)
        assert message.startswith(f"{path / 'facepaint.json'}") or f"file {path / 'facepaint.json'}" in message
        assert re.search(said, message), message
    assert weights_read == []
    print(f"\n{case}: {message.replace(str(path), '…')}")


def test_a_valid_artifact_reads_its_weights_after_its_description(fresh, saved):
    path, weights_read = fresh
    assert read_conditions(path) == saved.conditions and weights_read == []
    with pytest.raises(ArtifactError, match="the test's guard: a weight file is read"):
        load_artifact(path)  # the first weight file is read once the description passed
    assert len(weights_read) == 1


def test_an_edited_facepaint_json_changes_the_version(saved, tmp_path):
    """Editing a condition without the version is refused (the recorded version no longer matches); the same
    edit with the version recomputed is another version; reformatting the file changes nothing."""
    path = Path(shutil.copytree(saved.path, tmp_path / "model"))
    f = path / "facepaint.json"
    info = json.loads(f.read_text())
    info["conditions"]["adapter_scale"] = 0.5
    f.write_text(json.dumps(info, indent=2))
    with pytest.raises(ArtifactError, match=r"and the conditions in facepaint\.json do not match the version"):
        load_artifact(path)
    conditions = read_conditions(path)
    info["version"] = version_digest(
        (path / "kv.safetensors").read_bytes(), (path / "adapter.safetensors").read_bytes(), conditions
    )
    f.write_text(json.dumps(info, indent=2))
    edited = load_artifact(path)
    assert edited.version != saved.version and edited.conditions.adapter_scale == 0.5
    info = json.loads(json.dumps(json.loads((saved.path / "facepaint.json").read_text()), sort_keys=True))
    f.write_text(json.dumps(dict(reversed(info.items())), indent=4))  # another layout, the same content
    assert load_artifact(path).version == saved.version


def test_the_recorded_version_is_the_digest_of_the_weights_and_the_conditions(saved):
    kv, adapter = (saved.path / "kv.safetensors").read_bytes(), (saved.path / "adapter.safetensors").read_bytes()
    assert saved.version == version_digest(kv, adapter, saved.conditions)
    assert saved.version != version_digest(kv, adapter, tiny_conditions(128))
    assert saved.version != version_digest(adapter, kv, saved.conditions)


def test_what_save_artifact_writes_loads(saved, tmp_path):
    """Provenance `train` records stays at the top level; other `extra` keys go under notes; a NaN loss is
    written as null (facepaint.json is strict JSON); extra cannot set the artifact's own keys."""
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))
    adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
    extra = {"steps": 1, "final_loss": math.nan, "bench": "random weights", "v": 2}
    art = save_artifact(tmp_path / "model", comps.unet, adapter, tiny_conditions(64), extra)
    info = json.loads((art.path / "facepaint.json").read_text())
    assert info["final_loss"] is None and info["notes"] == {"bench": "random weights", "v": 2}
    assert load_artifact(art.path).info == info
    with pytest.raises(ValueError, match="must not set version"):
        save_artifact(tmp_path / "other", comps.unet, adapter, tiny_conditions(64), {"version": "0" * 12})
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "change, said",
    [
        ({"resolution": 1000000}, "conditions.resolution must be a whole number from 64 to 2048"),
        ({"adapter_scale": math.inf}, "conditions.adapter_scale must be a finite number from 0 to 10"),
        ({"parts": ()}, "conditions.parts must be a non-empty list"),
    ],
)
def test_conditions_out_of_range_are_refused_when_made(change, said):
    """What `train` records is checked when the run starts (train.conditions), not after it."""
    with pytest.raises(ValueError, match=re.escape(said)):
        dataclasses.replace(tiny_conditions(64), **change)


def test_the_schema_names_what_the_data_layer_names():
    """MASK_BACKENDS and FACE_PARTS repeat facepaint.data's (a layer the method may not import)."""
    from facepaint.data.celebamask import PART_NAMES
    from facepaint.data.masks import BACKENDS

    assert artifact_module.MASK_BACKENDS == BACKENDS and sorted(artifact_module.FACE_PARTS) == sorted(PART_NAMES)
