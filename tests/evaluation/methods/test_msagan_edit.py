"""MSaGAN in the evaluation (facepaint.evaluation.methods.msagan_edit): it loads what the gan stage saves, edits
only the pairs whose prompt asks for its attribute, towards the attribute present, through the pixel blend; and
says why when it cannot run."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from facepaint.evaluation.methods.base import EditInput, MethodUnavailable
from facepaint.evaluation.methods.msagan_edit import load_msagan
from facepaint.evaluation.msagan import GanConfig, networks
from facepaint.method.blend import soft_mask
from tests.helpers import config

RES = 64
CFG = config("gan", GanConfig, attribute="Smiling", channels=4, image_size=64)


def save_model(folder, cfg=CFG, G=None):
    """What stages/gan.py writes into data/gan/model."""
    folder.mkdir(parents=True, exist_ok=True)
    G = G or networks(cfg)[0]
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, folder / "generator.safetensors")
    (folder / "gan.json").write_text(json.dumps({"settings": asdict(cfg), "steps": 0}))
    return G


def edit_input(prompt: str, seed=0) -> EditInput:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)
    mask = np.zeros((RES, RES), bool)
    mask[16:48, 20:44] = True
    return EditInput(image, mask, soft_mask(mask, 1.0), float(mask.mean()), prompt, seed)


def test_it_edits_only_the_pairs_that_ask_for_its_attribute(tmp_path):
    save_model(tmp_path / "model")
    m = load_msagan(tmp_path / "model", RES, "cpu")
    assert m.applies(edit_input("a photo of a smiling young woman"))
    assert not m.applies(edit_input("a photo of a bald man with a mustache"))
    assert "Smiling" in m.scope() and "takes no text" in m.note and "64 px" in m.note


def test_an_edit_is_the_generators_towards_present_blended_into_the_photo(tmp_path):
    torch.manual_seed(0)
    G = save_model(tmp_path / "model")
    for p in G.parameters():  # a generator that changes the photo visibly
        torch.nn.init.normal_(p, 0, 0.3)
    save_model(tmp_path / "model", G=G)
    m = load_msagan(tmp_path / "model", RES, "cpu")
    x = edit_input("a photo of a smiling man")
    out = m.edit(x)
    assert out.dtype == np.uint8 and out.shape == (RES, RES, 3)
    outside = x.soft == 0
    assert np.array_equal(out[outside], x.image[outside])
    with torch.no_grad():  # by hand: target 1 (the attribute present), then the pixel blend with M_soft
        G.eval()
        t = torch.from_numpy(x.image).permute(2, 0, 1)[None].float() / 127.5 - 1
        edited, _ = G(t, torch.ones(1))
        towards_absent, _ = G(t, torch.zeros(1))
    raw = edited[0].permute(1, 2, 0).add(1).mul(127.5).round().clamp(0, 255).numpy()
    soft = x.soft[..., None]
    expected = np.clip(np.rint(soft * raw + (1 - soft) * x.image), 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert not torch.allclose(edited, towards_absent)  # the target matters, so target 1 is what was checked


def test_it_is_unavailable_with_the_reason(tmp_path):
    with pytest.raises(MethodUnavailable, match="dvc repro gan"):
        load_msagan(tmp_path / "none", RES, "cpu")
    off = tmp_path / "off"
    off.mkdir()
    (off / "gan.json").write_text(json.dumps({"off": "a folder of photos has no attributes"}))
    with pytest.raises(MethodUnavailable, match="not trained: a folder of photos"):
        load_msagan(off, RES, "cpu")
    bad = tmp_path / "bad"
    save_model(bad)
    (bad / "gan.json").write_text("{not json")
    with pytest.raises(MethodUnavailable, match="not readable JSON"):
        load_msagan(bad, RES, "cpu")
    other = tmp_path / "other"
    save_model(other)
    save_model(tmp_path / "wider", replace(CFG, channels=8))
    (other / "generator.safetensors").write_bytes((tmp_path / "wider" / "generator.safetensors").read_bytes())
    with pytest.raises(MethodUnavailable, match="does not match"):
        load_msagan(other, RES, "cpu")
