"""facepaint.method.generate: the Inpainter's speed options, batched generation and prompt encoding (tiny
model, 64 px, CPU)."""

import copy

import numpy as np
import pytest
import torch

from facepaint.method import generate as generate_mod
from facepaint.method.generate import Inpainter
from facepaint.method.models import tiny_components
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import Speed
from tests.helpers import BATCH_TOL, assert_close_images, box_mask, random_adapter, textured

RES = 64
FP32 = Speed(dtype="fp32")


@pytest.fixture(scope="module")
def inpainter():
    comps = tiny_components(seed=0)
    return Inpainter(comps, random_adapter(comps), 0.3, RES, device="cpu", speed_options=FP32)


def one(ip, image, mask, prompt, seed, steps=2, **kw):
    """generate for one crop (`kw`: more SamplingOptions fields)."""
    return ip.generate(
        [image],
        [mask],
        [float(mask.mean())],
        prompt,
        SamplingOptions(steps=steps, **{"guidance_scale": 7.5, "strength": 1.0, **kw}),
        seeds=seed,
    )[0][0]


# ------------------------------------------------------------------------------ speed options, batches


def conv_in(ip):
    return ip.pipe.unet.conv_in.weight  # a 3 x 3 conv: NCHW and NHWC layouts differ


def processors(model):
    return {type(p).__name__ for p in model.attn_processors.values()}


def test_speed_options_are_applied_and_recorded(monkeypatch):
    comps = tiny_components(seed=0)  # the options change the components in place: not the shared fixture
    adapter = random_adapter(comps)
    classic = Inpainter(
        comps, adapter, 0.3, RES, device="cpu", speed_options=Speed(attention="classic", channels_last=True)
    )
    assert processors(classic.pipe.unet) == processors(classic.pipe.vae) == {"AttnProcessor"}
    for module in (classic.pipe.unet, classic.pipe.vae):
        weight = next(p for p in module.parameters() if p.ndim == 4 and p.shape[-1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert classic.runtime == {
        "device": "cpu",
        "dtype": "fp32",
        "attention": "classic",
        "channels_last": True,
        "compile": "off",
    }

    default = Inpainter(comps, adapter, 0.3, RES, device="cpu")  # sdpa; channels_last None: off on the CPU
    assert processors(default.pipe.unet) == processors(default.pipe.vae) == {"AttnProcessor2_0"}
    assert conv_in(default).is_contiguous() and default.runtime["channels_last"] is False
    assert default.pipe.unet is comps.unet  # not compiled

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or copy.copy(module))
    ed = Inpainter(comps, adapter, 0.3, RES, device="cpu", speed_options=Speed(compile="max-autotune"))
    assert compiled == [{"mode": "max-autotune", "dynamic": False}] and ed.pipe.unet is not comps.unet
    Inpainter(comps, adapter, 0.3, RES, device="cpu", speed_options=Speed(compile=True))
    assert compiled[-1] == {"mode": None, "dynamic": False} and ed.runtime["compile"] == "max-autotune"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"attention": "flash"}, "attention must be one of"),
        ({"channels_last": "yes"}, "channels_last must be True, False or None"),
        ({"compile": "fast"}, "compile must be true, false or one of"),
        ({"dtype": "fp8"}, "dtype must be one of"),
    ],
)
def test_invalid_speed_options_are_refused_before_touching_the_model(bad, message):
    with pytest.raises(ValueError, match=message):
        Speed(**{"attention": "classic", **bad})  # refused when the options are made, before any model


def test_attention_and_channels_last_keep_the_image(inpainter):
    photo, mask = textured(64, 64, seed=13), box_mask(64, 64, 12, 52, 16, 48)
    reference = one(inpainter, photo, mask, "a face", 0)
    other = Inpainter(
        tiny_components(seed=0),
        inpainter.adapter,
        0.3,
        RES,
        device="cpu",
        speed_options=Speed(dtype="fp32", attention="classic", channels_last=True),
    )
    assert_close_images(one(other, photo, mask, "a face", 0), reference)
    assert other.runtime["attention"] == "classic" and other.runtime["channels_last"] is True
    assert inpainter.runtime == {
        "device": "cpu",
        "dtype": "fp32",
        "attention": "sdpa",
        "channels_last": False,
        "compile": "off",
    }


def test_a_batch_equals_each_crop_alone(inpainter):
    crops = [textured(RES, RES, seed=s) for s in (20, 21)]
    masks = [box_mask(RES, RES, 10, 50, 15, 45), box_mask(RES, RES, 5, 40, 20, 60)]
    betas = [float(m.mean()) for m in masks]
    prompts = ["a smiling face", "a face with blond hair"]
    opts = SamplingOptions(steps=3, guidance_scale=5.0, strength=1.0, negative_prompt="blurry")
    images, cuts = inpainter.generate(crops, masks, betas, prompts, opts, seeds=[4, 9])
    assert len(images) == 2 and cuts == ["", ""]
    alone = [
        inpainter.generate([c], [m], [b], p, opts, seeds=s)[0][0]
        for c, m, b, p, s in zip(crops, masks, betas, prompts, (4, 9))
    ]
    for batched, single in zip(images, alone):
        assert_close_images(batched, single)
    other_seed = inpainter.generate(crops[:1], masks[:1], betas[:1], prompts[0], opts, seeds=9)[0][0]
    assert not np.array_equal(alone[0], other_seed)  # the seed matters, so the check can fail
    with pytest.raises(ValueError, match="one per image"):
        inpainter.generate(crops, masks, betas, ["one", "two", "three"], opts)
    with pytest.raises(ValueError, match="crop 1: expected a uint8"):
        inpainter.generate([crops[0], crops[1][:32]], masks, betas, "a face", opts)


def test_the_scheduler_is_chosen_per_call(inpainter):
    """One Inpainter samples with the scheduler each call's options name (no scheduler of its own): DDIM and
    DPM-Solver++ give different images for the same seed, the same scheduler twice the same image, also after
    the other one ran."""
    photo, mask = textured(RES, RES, seed=3), box_mask(RES, RES, 12, 52, 16, 48)
    ddim = one(inpainter, photo, mask, "a face", 5, steps=3, scheduler="ddim")
    assert type(inpainter.pipe.scheduler).__name__ == "DDIMScheduler"
    dpm = one(inpainter, photo, mask, "a face", 5, steps=3, scheduler="dpm")
    assert type(inpainter.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert np.abs(ddim.astype(int) - dpm.astype(int)).max() > 2 * BATCH_TOL  # not a rounding difference
    assert np.array_equal(one(inpainter, photo, mask, "a face", 5, steps=3, scheduler="dpm"), dpm)
    assert np.array_equal(one(inpainter, photo, mask, "a face", 5, steps=3, scheduler="ddim"), ddim)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        inpainter.use_scheduler("euler")


def test_on_step_is_called_once_per_denoising_step(inpainter):
    """`on_step(i)` after each denoising step, i = 1, 2, ...: `steps` calls, or the `strength` share of them,
    each after that step's UNet call (one per step: the CFG pair is one batch)."""
    photo, mask = textured(RES, RES, seed=4), box_mask(RES, RES, 12, 52, 16, 48)
    events = []  # "unet" for each UNet call, i for each on_step(i), in order
    hook = inpainter.pipe.unet.register_forward_pre_hook(lambda module, args: events.append("unet"))
    try:
        for options, steps in (
            (SamplingOptions(steps=3), [1, 2, 3]),
            (SamplingOptions(steps=4, strength=0.5), [1, 2]),
            (SamplingOptions(steps=2, scheduler="dpm"), [1, 2]),
        ):
            events.clear()
            inpainter.generate([photo], [mask], [float(mask.mean())], "a face", options, on_step=events.append)
            assert events == [e for i in steps for e in ("unet", i)], (options, events)
    finally:
        hook.remove()


def test_the_negative_prompt_defaults_to_the_options(inpainter):
    """negative_prompts None: the options' negative prompt; given, it replaces it (per crop)."""
    photo, mask = textured(RES, RES, seed=5), box_mask(RES, RES, 12, 52, 16, 48)
    args = ([photo], [mask], [float(mask.mean())], "a face")
    blurry = SamplingOptions(steps=2, negative_prompt="blurry")
    from_options = inpainter.generate(*args, blurry, seeds=1)[0][0]
    given = inpainter.generate(*args, SamplingOptions(steps=2), seeds=1, negative_prompts=["blurry"])[0][0]
    assert np.array_equal(from_options, given)
    plain = inpainter.generate(*args, blurry, seeds=1, negative_prompts="")[0][0]
    assert not np.array_equal(plain, from_options)  # the negative prompt matters, so the check can fail


def test_encode_prompts_batches_and_deduplicates(inpainter):
    te, tok = inpainter.pipe.text_encoder, inpainter.pipe.tokenizer
    long = "a portrait of " + "a very " * 40 + "smiling woman"
    with torch.inference_mode():
        e, cuts = generate_mod.encode_prompts(te, tok, ["a face", long, "a face"])
        single, cut = generate_mod.encode_prompts(te, tok, long)
    assert e.shape == (3, tok.model_max_length, te.config.hidden_size) and single.shape[0] == 1
    assert cuts[0] == cuts[2] == "" and cuts[1] == cut[0] and cut[0].endswith("smiling woman")
    assert torch.equal(e[0], e[2]) and torch.allclose(e[1], single[0], atol=1e-5)


@pytest.mark.slow
def test_compiled_unet_gives_the_eager_image(inpainter):
    """Speed(compile=...) really compiles the UNet (inductor, CPU here) and keeps the image."""
    torch._dynamo.reset()
    photo, mask = textured(64, 64, seed=21), box_mask(64, 64, 12, 52, 16, 48)
    reference = one(inpainter, photo, mask, "a face", 0)
    compiled = Inpainter(
        tiny_components(seed=0),
        inpainter.adapter,
        0.3,
        RES,
        device="cpu",
        speed_options=Speed(dtype="fp32", compile="default"),
    )
    assert isinstance(compiled.pipe.unet, torch._dynamo.eval_frame.OptimizedModule)
    result = one(compiled, photo, mask, "a face", 0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert_close_images(result, reference)
    assert compiled.runtime["compile"] == "default"


# ------------------------------------------------------------------- the mask channel the UNet sees


def mask_channels(ip, image, mask) -> list[np.ndarray]:
    """The mask channel (input channel 4 of the 9) of every UNet call of one generation."""
    seen = []
    hook = ip.pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0][:, 4].cpu().numpy()))
    try:
        ip.generate([image], [mask], [float(mask.mean())], "a face", SamplingOptions(steps=2, guidance_scale=7.5))
    finally:
        hook.remove()
    return seen


def test_inference_sees_the_latent_mask_training_was_given(demo_project, inpainter):
    """Same photo, same M: the UNet's mask channel at inference equals the masks stage's M_latent (the
    training input), at every step and for both halves of classifier-free guidance. diffusers' own
    pipeline (nearest-neighbour downsampling) differs on some of these photos, so this can fail."""
    import torch

    from facepaint.common.images import decode_png
    from facepaint.common.io import read_parquet
    from facepaint.evaluation.run import load_sample

    table = read_parquet(demo_project / "data/masks.parquet")
    res = decode_png(table.iloc[0]["mask"]).shape[0]
    differs = 0
    for _, row in table.head(8).iterrows():
        trained = decode_png(row["latent"])  # what training concatenates to the noisy latent
        sample = load_sample(demo_project / "data/demo", row, res, sigma=8.0)  # evaluation/inference's input
        assert res == inpainter.resolution
        channels = mask_channels(inpainter, sample.image, sample.mask)
        assert len(channels) == 2 and all(c.shape == (2, *trained.shape) for c in channels)  # 2 steps, CFG pairs
        assert all(np.array_equal(c[k] >= 0.5, trained) for c in channels for k in range(2))
        nearest = (
            torch.nn.functional.interpolate(
                torch.from_numpy(sample.mask.astype(np.float32))[None, None], size=trained.shape
            )[0, 0].numpy()
            >= 0.5
        )
        differs += int(not np.array_equal(nearest, trained))
    assert differs > 0, "no photo here where diffusers' downsampling differs: the test could not fail"


@pytest.mark.fixture
def test_the_latent_masks_differ_from_nearest_downsampling_on_real_faces(fixture_root):
    """Why the pipeline is overridden: on real faces at 512 px, nearest-neighbour downsampling and the
    training's pooled M_latent disagree on a few percent of the face cells (4.6% on average over 50
    fixture faces, 2.9-12.9%, measured 2026-12-02)."""
    import torch

    from facepaint.common.images import resize_binary
    from facepaint.data.masks import annotation_union
    from facepaint.method.masks import latent_mask

    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:10]
    parts = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
    for i in ids:
        m = resize_binary(annotation_union(fixture_root, i, parts)[0], 512)
        pooled = latent_mask(m, 8)
        near = torch.nn.functional.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size=(64, 64))
        share = (pooled != (near[0, 0].numpy() >= 0.5)).sum() / pooled.sum()
        assert 0.01 < share < 0.2, (i, share)
