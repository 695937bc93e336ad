"""facepaint.evaluation.methods.registry on the tiny model at 64 px with a perturbed artifact: every method's contract,
blending vs none, the fine-tuning's effect, Blended Latent Diffusion's latent replacement step by
step, what build_methods reports unavailable, and measure()."""

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from facepaint.evaluation.methods.base import LABELS, EditInput, measure
from facepaint.evaluation.methods.blended_latent import BlendedLatent, LatentBlend
from facepaint.evaluation.methods.registry import build_methods
from facepaint.evaluation.run import EvalConfig
from facepaint.method.artifact import kv_parameters
from facepaint.method.blend import pixel_blend, soft_mask
from facepaint.method.masks import latent_mask
from facepaint.method.models import tiny_components
from facepaint.method.options import SamplingOptions
from tests.helpers import config

RES = 64
EVAL = config("evaluate", EvalConfig)
CFG = config("sampling", SamplingOptions, steps=2)  # the demo's evaluation sampling at 2 steps
INPAINTING = ["ours", "ours_no_blend", "sd15_inpaint", "blended_latent_diffusion_9ch", "blended_latent_diffusion"]


@pytest.fixture(scope="module")
def BUILD(baselines):
    return dict(
        device="cpu",
        dtype=EVAL.dtype,
        baselines=baselines,
        brushnet=EVAL.brushnet,
        diptych=EVAL.diptych,
        blended_latent=replace(EVAL.blended_latent, steps=4),  # its public schedule, fewer steps (test time)
    )


@pytest.fixture(scope="module")
def building(tiny_artifact, BUILD):
    return build_methods(INPAINTING, tiny_artifact.path, CFG, **BUILD)


@pytest.fixture(scope="module")
def built(building):
    return building[0]


def test_every_inpainting_method_is_built_in_the_order_asked(building):
    found, unavailable = building
    assert list(found) == INPAINTING and unavailable == {}


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
        assert built[name].label == LABELS[name]


def test_blending_keeps_the_background_and_without_it_the_vae_changes_it(outputs):
    x = edit_input()
    ours, raw = outputs["ours"][0], outputs["ours_no_blend"][0]
    outside = x.soft == 0
    assert np.array_equal(ours[outside], x.image[outside])
    assert (raw[outside] != x.image[outside]).any()
    assert np.array_equal(ours, pixel_blend(x.image, raw, x.soft))  # the same generation, then the blend


def test_fine_tuning_and_latent_replacement_change_the_result(outputs):
    assert not np.array_equal(outputs["sd15_inpaint"][0], outputs["ours_no_blend"][0])
    assert not np.array_equal(outputs["blended_latent_diffusion_9ch"][0], outputs["sd15_inpaint"][0])


def test_blended_latent_diffusion_runs_its_public_code_on_its_base(built, baselines, tiny_artifact, BUILD):
    """BLD is the public code's loop (facepaint.evaluation.methods.blended_latent, pinned against that code in
    tests/evaluation/methods/test_blended_latent.py) on the 4-channel model `evaluate.blended_latent.base` names:
    SD2.1-base by default, the SD1.5 text-to-image model as our variant."""
    bld = built["blended_latent_diffusion"]
    assert isinstance(bld, BlendedLatent) and bld.base == baselines.sd21_base
    assert bld.unet.config.in_channels == 4 and bld.tokenizer.pad_token == "!"  # SD2.1's tokenizer pads with "!"
    assert (
        bld.settings == BUILD["blended_latent"] and built["sd15_inpaint"].inpainter.pipe.unet.config.in_channels == 9
    )
    sd15 = {**BUILD, "blended_latent": replace(BUILD["blended_latent"], base="sd15_t2i")}
    found, unavailable = build_methods(["blended_latent_diffusion"], tiny_artifact.path, CFG, **sd15)
    assert unavailable == {} and found["blended_latent_diffusion"].base == baselines.sd15_t2i


def test_blended_latent_diffusion_9ch_replaces_the_background_latents_at_every_step(built, monkeypatch):
    seen = []
    real = LatentBlend.__call__

    def recording(self, pipe, i, t, kwargs):
        out = real(self, pipe, i, t, kwargs)
        seen.append((i, out["latents"].clone(), pipe.scheduler.timesteps.clone()))
        return out

    monkeypatch.setattr(LatentBlend, "__call__", recording)
    x = edit_input(seed=3)
    built["blended_latent_diffusion_9ch"].edit(x)
    pipe = built["blended_latent_diffusion_9ch"].inpainter.pipe
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


def test_every_method_samples_as_its_sampling_options_say(tiny_artifact, BUILD, monkeypatch):
    """build_methods hands its SamplingOptions to every SD1.5 method (BrushNet with evaluate.brushnet.scheduler
    `sampling`, [ours]; its default is its script's UniPC, tests/evaluation/methods/test_brushnet.py): 6 steps at
    strength 0.5 run 3 denoising steps, with the scheduler asked for, and guidance 1 runs the UNet without the
    unconditional half."""
    import facepaint.evaluation.methods.brushnet as bn

    options = replace(CFG, steps=6, strength=0.5, scheduler="dpm", guidance_scale=1.0)
    names = [*(n for n in INPAINTING if n != "blended_latent_diffusion"), "brushnet"]  # BLD: its code's sampling
    ours = replace(EVAL.brushnet, scheduler="sampling")
    found, unavailable = build_methods(names, tiny_artifact.path, options, **{**BUILD, "brushnet": ours})
    assert list(found) == names and unavailable == {}
    made = []
    real = bn.make_scheduler
    monkeypatch.setattr(bn, "make_scheduler", lambda name, config: made.append(name) or real(name, config))
    for name, m in found.items():
        assert m.options is options, name
        batches = []  # the batch of every denoising network call of one edit
        net = m.brushnet if name == "brushnet" else m.inpainter.pipe.unet
        hook = net.register_forward_pre_hook(
            lambda module, args, kwargs, seen=batches: seen.append((args[0] if args else kwargs["sample"]).shape[0]),
            with_kwargs=True,
        )
        try:
            m.edit(edit_input())
        finally:
            hook.remove()
        assert batches == [1, 1, 1], (name, batches)
        if name != "brushnet":
            assert type(m.inpainter.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler", name
    assert made == ["dpm"]  # BrushNet makes its scheduler per edit


def test_ours_loads_the_artifact_into_its_own_unet_only(built, tiny_artifact):
    base = kv_parameters(tiny_components(seed=0, parts=("unet",)).unet)
    for name in ("sd15_inpaint", "blended_latent_diffusion_9ch"):
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


def test_a_missing_text_to_image_base_makes_bld_unavailable_naming_the_files(tiny_artifact, BUILD, tmp_path):
    missing = replace(BUILD["baselines"], sd21_base=str(tmp_path / "nowhere"))
    found, unavailable = build_methods(
        ["sd15_inpaint", "blended_latent_diffusion"], tiny_artifact.path, CFG, **{**BUILD, "baselines": missing}
    )
    assert list(found) == ["sd15_inpaint"]  # the others are still built
    why = unavailable["blended_latent_diffusion"]
    assert "nowhere" in why and "unet/" in why and "huggingface-cli download" in why


def test_wrong_input_size_is_refused(built):
    x = edit_input()
    x.image = x.image[:32, :32]
    with pytest.raises(ValueError, match=r"\(64, 64, 3\)"):
        built["ours"].edit(x)


def test_unknown_methods_and_settings(tiny_artifact, BUILD):
    with pytest.raises(ValueError, match="unknown method.*'sdxl'.*known.*blended_latent_diffusion"):
        build_methods(["ours", "sdxl"], tiny_artifact.path, CFG, **BUILD)
    with pytest.raises(ValueError, match="scheduler must be one of"):  # the sampling options refuse it themselves
        replace(CFG, scheduler="euler")
    with pytest.raises(TypeError, match="options must be a SamplingOptions, got dict"):
        build_methods(["ours"], tiny_artifact.path, asdict(CFG), **BUILD)
    with pytest.raises(ValueError, match=r"evaluate.brushnet: unknown key\(s\) \['scale'\]"):
        build_methods(["brushnet"], tiny_artifact.path, CFG, **{**BUILD, "brushnet": {"scale": 1.0}})


def test_the_publications_baselines_load_from_the_demo_models(tiny_artifact, BUILD):
    """BrushNet and Diptych Prompting are built through their real loading code from the tiny models the demo
    stage writes, and edit a photo; without those files each is unavailable, naming what to supply."""
    names = ["brushnet", "diptych_prompting"]
    found, unavailable = build_methods(names, tiny_artifact.path, CFG, **BUILD)
    assert list(found) == names and unavailable == {}
    x = edit_input()
    for name, m in found.items():
        out = m.edit(x)
        assert out.dtype == np.uint8 and out.shape == (RES, RES, 3) and m.label == LABELS[name]
        assert (out[x.mask] != x.image[x.mask]).any(), name
    nowhere = replace(BUILD["baselines"], brushnet="/nowhere/brushnet", flux="/nowhere/flux")
    found, unavailable = build_methods(names, tiny_artifact.path, CFG, **{**BUILD, "baselines": nowhere})
    assert found == {} and set(unavailable) == set(names)
    assert "/nowhere/brushnet" in unavailable["brushnet"] and "config.json" in unavailable["brushnet"]
    assert "/nowhere/flux" in unavailable["diptych_prompting"] and "transformer" in unavailable["diptych_prompting"]


def test_paint_by_example_offline_is_unavailable_and_says_how_to_supply_it(tiny_artifact, offline, baselines):
    out = offline(
        "from facepaint.evaluation.methods.registry import build_methods\n"
        "from facepaint.method.options import SamplingOptions\n"
        f"found, unavailable = build_methods(['paint_by_example', 'sd15_inpaint'], {str(tiny_artifact.path)!r}, "
        f"SamplingOptions(**{asdict(CFG)!r}), device='cpu', dtype='fp32', "
        f"baselines={asdict(baselines)!r}, brushnet={asdict(EVAL.brushnet)!r}, diptych={asdict(EVAL.diptych)!r}, "
        f"blended_latent={asdict(EVAL.blended_latent)!r})\n"
        "print(sorted(found)); print(unavailable['paint_by_example'])\n"
    )
    listed, reason = out.splitlines()[-2:]
    assert listed == "['sd15_inpaint']"  # the other methods are still built
    assert "Fantasy-Studio/Paint-by-Example" in reason and "huggingface-cli download" in reason
    assert "paint_by_example" in reason
