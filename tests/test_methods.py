"""facepaint.methods on the tiny model at 64 px with a perturbed artifact: every method's contract,
blending vs none, the fine-tuning's effect, Blended Latent Diffusion's latent replacement step by
step, what build_methods reports unavailable, and measure()."""

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from conftest import config
from facepaint import methods
from facepaint.artifact import kv_parameters
from facepaint.edit import pixel_blend
from facepaint.evaluate import EvalConfig
from facepaint.masks import latent_mask, soft_mask
from facepaint.methods import EditInput, build_methods, measure
from facepaint.models import tiny_components

RES = 64
EVAL = config("evaluate", EvalConfig, steps=2)
CFG = EVAL.inference()  # the demo's evaluation settings at 2 steps
BUILD = dict(device="cpu", dtype=EVAL.dtype, paint_by_example=EVAL.paint_by_example)
INPAINTING = ["ours", "ours_no_blend", "sd15_inpaint", "blended_latent_diffusion"]


@pytest.fixture(scope="module")
def built(tiny_artifact):
    found, unavailable = build_methods(INPAINTING, tiny_artifact.path, CFG, **BUILD)
    assert list(found) == INPAINTING and unavailable == {}
    return found


def edit_input(seed=0) -> EditInput:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:RES, 0:RES]
    base = np.stack([128 + 80 * np.sin(xx / 9 + c) * np.cos(yy / 11) for c in range(3)], axis=-1)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((RES, RES), bool)
    mask[16:48, 20:44] = True
    return EditInput(image, mask, soft_mask(mask, 1.0), float(mask.mean()), "a smiling face", seed)


@pytest.fixture(scope="module")
def outputs(built):
    """{name: (seed 0, seed 0 again, seed 1)} for every inpainting method."""
    return {n: tuple(m.edit(edit_input(s)) for s in (0, 0, 1)) for n, m in built.items()}


def test_every_method_is_deterministic_in_its_seed(built, outputs):
    for name, (a, again, other) in outputs.items():
        assert a.dtype == np.uint8 and a.shape == (RES, RES, 3), name
        assert np.array_equal(a, again), name
        assert not np.array_equal(a, other), name
        assert built[name].label == methods.LABELS[name]


def test_blending_keeps_the_background_and_without_it_the_vae_changes_it(outputs):
    x = edit_input()
    ours, raw = outputs["ours"][0], outputs["ours_no_blend"][0]
    outside = x.soft == 0
    assert np.array_equal(ours[outside], x.image[outside])
    assert (raw[outside] != x.image[outside]).any()
    assert np.array_equal(ours, pixel_blend(x.image, raw, x.soft))  # the same generation, then the blend


def test_fine_tuning_and_latent_replacement_change_the_result(outputs):
    assert not np.array_equal(outputs["sd15_inpaint"][0], outputs["ours_no_blend"][0])
    assert not np.array_equal(outputs["blended_latent_diffusion"][0], outputs["sd15_inpaint"][0])


def test_blended_latent_diffusion_replaces_the_background_latents_at_every_step(built, monkeypatch):
    seen = []
    real = methods.LatentBlend.__call__

    def recording(self, pipe, i, t, kwargs):
        out = real(self, pipe, i, t, kwargs)
        seen.append((i, out["latents"].clone(), pipe.scheduler.timesteps.clone()))
        return out

    monkeypatch.setattr(methods.LatentBlend, "__call__", recording)
    x = edit_input(seed=3)
    built["blended_latent_diffusion"].edit(x)
    pipe = built["blended_latent_diffusion"].inpainter.pipe
    with torch.no_grad():  # recomputed here: the photo's posterior mean and the sampler's starting noise
        pixels = torch.from_numpy(x.image).permute(2, 0, 1)[None].float() / 127.5 - 1
        init = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    noise = torch.randn(init.shape, generator=torch.Generator("cpu").manual_seed(3))
    keep = torch.from_numpy(~latent_mask(x.mask, 8)).expand_as(init[0])[None]
    assert 0 < keep.float().mean() < 1
    assert [i for i, _, _ in seen] == list(range(CFG.steps))
    for i, latents, timesteps in seen:
        target = init if i == CFG.steps - 1 else pipe.scheduler.add_noise(init, noise, timesteps[i + 1 : i + 2])
        assert torch.allclose(latents[keep], target[keep], atol=1e-5), i
        assert not torch.allclose(latents[~keep], target[~keep], atol=1e-3), i  # the face is generated


def test_ours_loads_the_artifact_into_its_own_unet_only(built, tiny_artifact):
    base = kv_parameters(tiny_components(seed=0, parts=("unet",)).unet)
    for name in ("sd15_inpaint", "blended_latent_diffusion"):
        for k, p in kv_parameters(built[name].inpainter.pipe.unet).items():
            assert torch.equal(p, base[k]), (name, k)
    ours = kv_parameters(built["ours"].inpainter.pipe.unet)
    assert all(torch.equal(p, tiny_artifact.kv[k]) for k, p in ours.items())
    assert built["ours"].inpainter is built["ours_no_blend"].inpainter  # one fine-tuned model for both
    assert built["sd15_inpaint"].inpainter.adapter is None and built["ours"].inpainter.adapter is not None


def test_measure_reports_cpu_time(built, outputs):
    out, stats = measure(built["sd15_inpaint"], edit_input(), "cpu")
    assert np.array_equal(out, outputs["sd15_inpaint"][0])
    assert stats["clock"] == "cpu" and stats["seconds"] > 0 and stats["wall_seconds"] > 0
    assert stats["peak_mem_mib"] is None
    pipe = built["sd15_inpaint"].inpainter.pipe
    size = sum(p.numel() * 4 for m in (pipe.vae, pipe.unet, pipe.text_encoder) for p in m.parameters())
    assert stats["weights_mib"] == pytest.approx(size / 2**20, rel=1e-3)  # + small buffers (position ids)


def test_wrong_input_size_is_refused(built):
    x = edit_input()
    x.image = x.image[:32, :32]
    with pytest.raises(ValueError, match=r"\(64, 64, 3\)"):
        built["ours"].edit(x)


def test_unknown_and_unintegrated_methods(tiny_artifact):
    with pytest.raises(ValueError, match="unknown method.*'sdxl'.*known.*blended_latent_diffusion"):
        build_methods(["ours", "sdxl"], tiny_artifact.path, CFG, **BUILD)
    with pytest.raises(ValueError, match="scheduler"):
        build_methods(["ours"], tiny_artifact.path, replace(CFG, scheduler="euler"), **BUILD)
    found, unavailable = build_methods(["brushnet", "diptych_prompting"], tiny_artifact.path, CFG, **BUILD)
    assert found == {} and set(unavailable) == {"brushnet", "diptych_prompting"}
    assert "TencentARC/BrushNet" in unavailable["brushnet"] and "FLUX" in unavailable["diptych_prompting"]


def test_paint_by_example_offline_is_unavailable_and_says_how_to_supply_it(tiny_artifact, offline):
    out = offline(
        "from facepaint.methods import *\n"
        f"found, unavailable = build_methods(['paint_by_example', 'sd15_inpaint'], {str(tiny_artifact.path)!r}, "
        f"InferenceConfig(**{asdict(CFG)!r}), device='cpu', dtype='fp32', "
        f"paint_by_example={EVAL.paint_by_example!r})\n"
        "print(sorted(found)); print(unavailable['paint_by_example'])\n"
    )
    listed, reason = out.splitlines()[-2:]
    assert listed == "['sd15_inpaint']"  # the other methods are still built
    assert "Fantasy-Studio/Paint-by-Example" in reason and "huggingface-cli download" in reason
    assert "paint_by_example" in reason
