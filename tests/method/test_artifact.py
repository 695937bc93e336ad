import json

import pytest
import torch

from facepaint.method.adapter import FaceAdapter
from facepaint.method.artifact import ArtifactError, apply_artifact, freeze_all_but_kv, load_artifact, save_artifact
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


def test_an_older_artifact_that_records_sigma_loads_and_ignores_it(trained):
    """The previous format recorded the soft mask's sigma (pixels at the model's resolution) among the
    conditions; sigma is a sampling option now (SamplingOptions.sigma), so such an artifact still loads, with
    the same conditions and version, and its recorded sigma is not read."""
    art, _, _ = trained
    info = json.loads((art.path / "facepaint.json").read_text())
    assert "sigma" not in info["conditions"]  # this version no longer records it
    info["conditions"]["sigma"] = 1.0  # as the previous version wrote it
    (art.path / "facepaint.json").write_text(json.dumps(info, indent=2))
    loaded = load_artifact(art.path)
    assert loaded.conditions == tiny_conditions(64) and loaded.version == art.version
    assert not hasattr(loaded.conditions, "sigma") and "sigma" not in loaded.conditions.as_dict()


def test_format_1_artifacts_say_to_retrain(trained):
    art, _, _ = trained
    info = json.loads((art.path / "facepaint.json").read_text())
    (art.path / "facepaint.json").write_text(json.dumps({**info, "format": 1}))
    with pytest.raises(ArtifactError, match="format 1.*retrain"):
        load_artifact(art.path)


def test_version_digest_depends_on_the_weights_only(trained, tmp_path):
    """The version names the weights: the same weights with other conditions keep it."""
    art, comps, adapter = trained
    other = save_artifact(tmp_path / "other", comps.unet, adapter, tiny_conditions(64, adapter_scale=0.5))
    assert other.conditions != art.conditions
    assert other.version == art.version
    with torch.no_grad():
        adapter.w2.weight.add_(1e-3)
    assert save_artifact(tmp_path / "changed", comps.unet, adapter, tiny_conditions(64)).version != art.version
