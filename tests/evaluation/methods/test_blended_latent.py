"""Blended Latent Diffusion (`blended_latent_diffusion`) against its public code, omriav/blended-latent-diffusion
scripts/text_editing_SD2.py: its settings, a reference run written line by line from that script on the tiny
SD2.1-base-like model of the demo, the schedule step by step (the first step 25% in, the blend after the step at
the step's own t, fresh noise every step), and (slow) the full-size SD2.1-base architecture loaded through the
real loader at 512 px."""

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facepaint.evaluation.methods.blended_latent as bl
from facepaint.evaluation.methods.base import EditInput
from facepaint.evaluation.methods.blended_latent import (
    BlendedLatent,
    BlendedLatentSettings,
    blending_timesteps,
    public_scheduler,
)
from facepaint.evaluation.run import EvalConfig
from facepaint.method.blend import soft_mask
from facepaint.method.models import load_t2i_components
from stages.common import load_params, section
from tests.helpers import config

REPO = Path(__file__).resolve().parents[3]
RES = 64
EVAL = config("evaluate", EvalConfig)
FEW = replace(EVAL.blended_latent, steps=4)  # the public schedule at 4 steps: t = 750, 500, 250, 0; 1 skipped


def photo_and_mask(res=RES):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res]
    base = np.stack([128 + 80 * np.sin(xx / 9 + c) * np.cos(yy / 11) for c in range(3)], axis=-1)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((res, res), bool)
    mask[res // 4 : 3 * res // 4, 5 * res // 16 : 11 * res // 16] = True
    return image, mask


@pytest.fixture(scope="module")
def sd21(baselines):
    return load_t2i_components(baselines.sd21_base)


@pytest.fixture(scope="module")
def method(sd21):
    return BlendedLatent(sd21, FEW, RES, device="cpu")


# ------------------------------------------------------------------------------- the reference, from its code


@torch.no_grad()
def reference(comps, image, mask, prompt, seed, steps, blending_percentage=0.25, guidance_scale=7.5):
    """scripts/text_editing_SD2.py's `edit_image` (l. 66-154) for one image at the image's size, in fp32 on the CPU,
    its default generator replaced by one seeded generator that draws the starting noise and then every step's
    `randn_like` in the script's order. Returns (the latents it decodes, the timesteps run, the noises drawn)."""
    from diffusers import DDIMScheduler

    vae, tokenizer, text_encoder, unet = comps.vae, comps.tokenizer, comps.text_encoder, comps.unet
    scheduler = DDIMScheduler(  # l. 58-64
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    height, width = image.shape[:2]
    x = torch.from_numpy(image).float() / 127.5 - 1  # _image2latent, l. 157-164
    source_latents = vae.encode(x.permute(2, 0, 1).unsqueeze(0))["latent_dist"].mean * 0.18215
    small = Image.fromarray(mask.astype(np.uint8) * 255).convert("L").resize((width // 8, height // 8), Image.NEAREST)
    m = np.array(small) / 255  # _read_mask, l. 166-175
    m[m < 0.5] = 0
    m[m >= 0.5] = 1
    latent_mask = torch.from_numpy(m[np.newaxis, np.newaxis, ...]).float()
    text_input = tokenizer(  # l. 87-104
        [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    text_embeddings = text_encoder(text_input.input_ids)[0]
    uncond_input = tokenizer(
        [""], padding="max_length", max_length=text_input.input_ids.shape[-1], return_tensors="pt"
    )
    uncond_embeddings = text_encoder(uncond_input.input_ids)[0]
    text_embeddings = torch.cat([uncond_embeddings, text_embeddings])
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, unet.config.in_channels, height // 8, width // 8), generator=generator)  # l. 106-110
    scheduler.set_timesteps(steps)
    run, noises = [], []
    for t in scheduler.timesteps[int(len(scheduler.timesteps) * blending_percentage) :]:  # l. 114-143
        latent_model_input = scheduler.scale_model_input(torch.cat([latents] * 2), timestep=t)
        noise_pred = unet(latent_model_input, t, encoder_hidden_states=text_embeddings).sample
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents).prev_sample
        noise = torch.randn(latents.shape, generator=generator)  # torch.randn_like(latents)
        noise_source_latents = scheduler.add_noise(source_latents, noise, t)
        latents = latents * latent_mask + noise_source_latents * (1 - latent_mask)
        run.append(int(t))
        noises.append(noise)
    return latents, run, noises


def decoded_latents(method, monkeypatch) -> list:
    """Record the latents `method` decodes (x 0.18215, as its code scales them back)."""
    seen = []
    decode = method.vae.decode

    def recording(z, *a, **k):
        seen.append(z * 0.18215)
        return decode(z, *a, **k)

    monkeypatch.setattr(method.vae, "decode", recording)
    return seen


# ------------------------------------------------------------------------------------------------- tests


def test_the_settings_are_its_public_codes():
    """params.yaml runs BLD as scripts/text_editing_SD2.py does by default; the paper profile names its model."""
    assert EVAL.blended_latent == BlendedLatentSettings(
        base="sd21_base", blending_start=0.25, renoise="fresh", steps=50, guidance_scale=7.5
    )
    paper = section(load_params(REPO / "params.yaml", profile="paper"), "evaluate", EvalConfig)
    assert paper.blended_latent == EVAL.blended_latent
    assert paper.baselines.sd21_base == "stabilityai/stable-diffusion-2-1-base" == bl.SD21_BASE
    s = public_scheduler()
    assert type(s).__name__ == "DDIMScheduler" and s.config.steps_offset == 0 and not s.config.set_alpha_to_one
    run = blending_timesteps(s, 50, 0.25)
    assert len(run) == 38 and int(run[0]) == 740 and int(run[-1]) == 0  # 12 of 980, 960, ... skipped


def test_the_demo_model_has_sd21_bases_structure(sd21):
    unet, te, tok = sd21.unet.config, sd21.text_encoder.config, sd21.tokenizer
    assert unet.in_channels == 4 and unet.use_linear_projection and unet.cross_attention_dim == te.hidden_size
    assert len(set(unet.attention_head_dim)) > 1  # heads per block, as SD2.1's (5, 10, 20, 20)
    assert te.hidden_act == "gelu" and tok.pad_token == "!" and tok.model_max_length == 77
    full = bl.SD21_UNET
    assert (full["cross_attention_dim"], tuple(full["attention_head_dim"])) == (1024, (5, 10, 20, 20))
    assert (bl.SD21_TEXT["hidden_size"], bl.SD21_TEXT["num_hidden_layers"]) == (1024, 23)


def test_an_edit_is_the_public_codes_run(method, sd21, monkeypatch):
    """The latents decoded equal the reference's (written from the script) at the same seed; the output is their
    decoding, nothing pasted back."""
    image, mask = photo_and_mask()
    seen = decoded_latents(method, monkeypatch)
    out = method.edit(EditInput(image, mask, soft_mask(mask, 1.0), float(mask.mean()), "a smiling face", 5))
    ref, run, _ = reference(sd21, image, mask, "a smiling face", 5, FEW.steps, FEW.blending_start)
    assert run == [500, 250, 0]
    assert torch.allclose(seen[0], ref, atol=1e-4), (seen[0] - ref).abs().max()
    with torch.no_grad():
        pixels = (sd21.vae.decode(ref / 0.18215).sample / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - np.rint(pixels * 255).astype(int)).max() <= 1
    assert (out[~mask] != image[~mask]).any()  # the background went through the VAE


def test_each_step_blends_the_photo_noised_to_that_step_with_fresh_noise(method, sd21, monkeypatch):
    """Step by step: the first step is 25% in; after the scheduler's step the latents outside the mask are
    sqrt(abar_t) source + sqrt(1 - abar_t) noise_i at the step's own t (abar of the script's DDIM betas), with a
    new noise at every step; inside they are the step's result."""
    calls = []
    real = bl.blend

    def recording(scheduler, latents, source, mask, noise, t):
        out = real(scheduler, latents, source, mask, noise, t)
        calls.append((int(t), latents.clone(), source, mask, noise.clone(), out.clone()))
        return out

    monkeypatch.setattr(bl, "blend", recording)
    image, mask = photo_and_mask()
    method.generate(image, mask, "a smiling face", 5)
    _, run, noises = reference(sd21, image, mask, "a smiling face", 5, FEW.steps, FEW.blending_start)
    assert [t for t, *_ in calls] == run == [500, 250, 0]
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    for i, (t, stepped, source, m, noise, out) in enumerate(calls):
        assert torch.equal(noise, noises[i]), i  # the reference's i-th draw
        expected = stepped * m + (abar[t].sqrt() * source + (1 - abar[t]).sqrt() * noise).float() * (1 - m)
        assert torch.allclose(out, expected, atol=1e-5), i
        assert 0 < m.mean() < 1
    assert not torch.allclose(calls[0][4], calls[1][4])  # fresh noise: two steps' noises differ


def test_fixed_renoise_and_the_sd15_variant(sd21, baselines, monkeypatch):
    """`renoise: fixed` reuses the starting noise; `base: sd15_t2i` runs the same loop on the SD1.5 model."""
    fixed = BlendedLatent(sd21, replace(FEW, renoise="fixed"), RES, device="cpu")
    noises = []
    real = bl.blend
    monkeypatch.setattr(bl, "blend", lambda s, lat, src, m, n, t: noises.append(n) or real(s, lat, src, m, n, t))
    image, mask = photo_and_mask()
    fixed.generate(image, mask, "a smiling face", 5)
    assert len(noises) == 3 and all(n is noises[0] for n in noises)
    sd15 = BlendedLatent(load_t2i_components(baselines.sd15_t2i), replace(FEW, base="sd15_t2i"), RES, device="cpu")
    assert not sd15.unet.config.use_linear_projection and sd15.tokenizer.pad_token != "!"  # SD1.5's, not SD2.1's
    out = sd15.generate(image, mask, "a smiling face", 5)
    assert out.shape == (RES, RES, 3) and out.dtype == np.uint8


def test_settings_are_checked():
    with pytest.raises(ValueError, match="base must be one of"):
        replace(FEW, base="flux")
    with pytest.raises(ValueError, match="renoise must be one of"):
        replace(FEW, renoise="once")
    with pytest.raises(ValueError, match="blending_start"):
        replace(FEW, blending_start=1.0)
    with pytest.raises(SystemExit, match=r"evaluate.blended_latent: unknown key\(s\) \['start'\]"):
        config("evaluate", EvalConfig, blended_latent={"start": 0.25})


# ------------------------------------------------------------------------------------------- paper size


@pytest.mark.slow
def test_bld_runs_on_the_full_size_sd21_base_architecture(tmp_path, capsys):
    """SD2.1-base's full architecture (random weights, 5 GB in fp32) saved in the hub's diffusers layout, loaded by
    the real loader, edits skimage's astronaut at 512 px in fp32 on the CPU: the public loop at steps=2 (25% of
    2 skips none: t = 500, 0). Prints the times and the peak memory: on 2 shared CPU cores, saving 42 s, the edit
    233 s, peak RSS 6.2 GiB (5 minutes in all)."""
    import resource

    from skimage import data

    t0 = time.perf_counter()
    bl.save_sd21_base(tmp_path / "sd21", seed=0, full_size=True)
    saved = time.perf_counter() - t0
    comps = load_t2i_components(str(tmp_path / "sd21"))
    assert comps.unet.config.cross_attention_dim == 1024 and list(comps.unet.config.attention_head_dim) == [
        5,
        10,
        20,
        20,
    ]
    assert comps.text_encoder.config.num_hidden_layers == 23 and comps.text_encoder.config.hidden_size == 1024
    settings = replace(EVAL.blended_latent, steps=2)
    m = BlendedLatent(comps, settings, 512, device="cpu")
    image = np.asarray(Image.fromarray(data.astronaut()).resize((512, 512), Image.BILINEAR))
    mask = np.zeros((512, 512), bool)
    mask[60:250, 150:330] = True  # her face
    t1 = time.perf_counter()
    out = m.edit(EditInput(image, mask, soft_mask(mask, 4.0), float(mask.mean()), "an astronaut with a beard", 0))
    edit = time.perf_counter() - t1
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8 and (out[mask] != image[mask]).any()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with capsys.disabled():
        print(
            f"\nBLD full-size SD2.1-base: save {saved:.0f} s, 2-step edit at 512 px {edit:.0f} s, "
            f"peak RSS {peak:.1f} GiB"
        )
