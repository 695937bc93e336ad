"""Blended Diffusion (facepaint.evaluation.methods.blended_diffusion, .guided_unet) on tiny random models saved in
the public layouts: guided-diffusion's checkpoint keys, its legacy attention's head order, its respaced schedule,
the background blend at every step, the augmentation averaging of the CLIP loss, the final blend, and the reasons
it is unavailable without weights."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facepaint.evaluation.methods.base import EditInput, MethodUnavailable
from facepaint.evaluation.methods.blended_diffusion import (
    Augmentations,
    BlendedDiffusionSettings,
    Respaced,
    clip_loss,
    load_blended_diffusion,
    space_timesteps,
    spherical_distance,
)
from facepaint.evaluation.methods.guided_unet import (
    TINY,
    UNCOND_256,
    GuidedCheckpointError,
    build_unet,
    convert_guided_state_dict,
    load_guided_unet,
    save_random_guided_checkpoint,
    to_guided_state_dict,
)
from facepaint.evaluation.methods.open_clip_model import TINY_CLIP, save_random_open_clip
from facepaint.evaluation.run import EvalConfig
from tests.helpers import config

KEYS = Path(__file__).with_name("guided_diffusion_256_uncond_keys.json")
RES = 64
SETTINGS = replace(config("evaluate", EvalConfig).blended_diffusion, timestep_respacing=10, skip_timesteps=7)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("bd")
    return save_random_guided_checkpoint(out / "gd.pt", TINY, 0), save_random_open_clip(out / "clip", TINY_CLIP, 0)


@pytest.fixture(scope="module")
def method(weights):
    return load_blended_diffusion(str(weights[0]), str(weights[1]), SETTINGS, RES, "cpu")


def edit_input(seed=0, prompt="a smiling face") -> EditInput:
    from facepaint.method.blend import soft_mask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)
    mask = np.zeros((RES, RES), bool)
    mask[16:48, 20:44] = True
    return EditInput(image, mask, soft_mask(mask, 1.0), float(mask.mean()), prompt, seed)


# ------------------------------------------------------------------------------------------------ the UNet


def test_the_checkpoint_layout_is_guided_diffusions_256_uncond():
    """Every key and shape of 256x256_diffusion_uncond.pt as guided-diffusion's own UNetModel names them (recorded
    from its code with Blended Diffusion's flags) is what the conversion reads, and nothing else."""
    expected = json.loads(KEYS.read_text())
    with torch.device("meta"):
        unet = build_unet(UNCOND_256)
    ours = {k: list(v.shape) for k, v in to_guided_state_dict(unet.state_dict(), UNCOND_256).items()}
    assert ours == expected
    assert sum(math.prod(s) for s in expected.values()) == 552_814_086  # its parameter count


def test_the_conversion_is_exact_both_ways():
    torch.manual_seed(0)
    sd = build_unet(TINY).state_dict()
    back = convert_guided_state_dict(to_guided_state_dict(sd, TINY), TINY)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_the_legacy_attention_keeps_q_k_v_of_each_head_together():
    """guided-diffusion's QKVAttentionLegacy: qkv (3C channels) reshaped to (heads, [q, k, v] x head width); the
    converted diffusers attention must compute exactly that (a hand computation from the checkpoint's tensors)."""
    torch.manual_seed(1)
    unet = build_unet(TINY)
    for p in unet.parameters():
        torch.nn.init.normal_(p, 0, 0.2)
    guided = to_guided_state_dict(unet.state_dict(), TINY)
    width = TINY.num_channels * TINY.channel_mult[-1]
    heads, ch = width // TINY.num_head_channels, TINY.num_head_channels
    h = torch.randn(2, width, 4, 4)
    norm = torch.nn.functional.group_norm(
        h, 32, guided["middle_block.1.norm.weight"], guided["middle_block.1.norm.bias"]
    )
    qkv = torch.nn.functional.conv1d(
        norm.flatten(2), guided["middle_block.1.qkv.weight"], guided["middle_block.1.qkv.bias"]
    )
    q, k, v = qkv.reshape(2 * heads, 3 * ch, 16).split(ch, dim=1)
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(2, width, 16)
    out = torch.nn.functional.conv1d(
        a, guided["middle_block.1.proj_out.weight"], guided["middle_block.1.proj_out.bias"]
    )
    expected = h + out.reshape(h.shape)
    loaded = build_unet(TINY)  # what the loader makes of the checkpoint
    loaded.load_state_dict(convert_guided_state_dict(guided, TINY))
    with torch.no_grad():
        got = loaded.mid_block.attentions[0](h)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_a_checkpoint_of_another_architecture_or_no_file_says_what_to_supply(tmp_path, weights):
    with pytest.raises(
        GuidedCheckpointError, match="256x256_diffusion_uncond.pt.*evaluate.baselines.guided_diffusion"
    ):
        load_guided_unet(tmp_path / "absent.pt", UNCOND_256)
    with pytest.raises(GuidedCheckpointError, match="missing keys"):
        load_guided_unet(weights[0], UNCOND_256)  # the tiny file read as the 256 px model
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GuidedCheckpointError, match="not a readable PyTorch checkpoint"):
        load_guided_unet(tmp_path / "junk.pt", TINY)


# ---------------------------------------------------------------------------------------------- the schedule


def test_the_respaced_schedule_is_guided_diffusions():
    steps = space_timesteps(1000, 100)
    assert steps[:4] == [0, 10, 20, 30] and steps[-1] == 999 and len(set(steps)) == 100
    assert space_timesteps(1000, 20)[:3] == [0, 53, 105]  # round(k * 999 / 19)
    d = Respaced(100)
    full = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(d.abar, full[steps], rtol=1e-12)  # the kept steps keep the original abar
    assert d.betas[0] == pytest.approx(1e-4)
    # learned-range variance bounds: the posterior variance (its first entry clipped to the second) and beta
    post = d.betas * (1 - np.append(1, d.abar[:-1])) / (1 - d.abar)
    assert d.post_log_var_clipped[0] == pytest.approx(math.log(post[1]))


# ------------------------------------------------------------------------------------------ the CLIP loss


def test_the_augmentations_keep_one_plain_copy_per_sample_and_augment_the_rest():
    torch.manual_seed(0)
    aug = Augmentations(16, 4)
    x = torch.rand(2, 3, 32, 32)
    out = aug(x)
    assert out.shape == (8, 3, 16, 16)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 16)
    assert torch.equal(out[:2], pooled)  # [I1, I2, I1_aug1, I2_aug1, ...]: the first copies as they are
    assert not torch.equal(out[2:], pooled.tile(3, 1, 1, 1))


class _FakeClip(torch.nn.Module):
    """encode_image: each image's mean per channel (3-d embeddings), so every copy's distance is known."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, x):
        return x.mean((2, 3)) + 0 * self.p


def test_the_clip_loss_averages_each_samples_copies_and_sums_the_samples():
    aug = Augmentations(8, 3)
    shifts = torch.tensor([0.0, 0.0, 0.3, -0.2, 0.5, 0.1]).view(6, 1, 1, 1)  # per copy, in its order

    class Shift(torch.nn.Module):
        def forward(self, t):
            return t + shifts[2:]

    aug.augment = Shift()
    x, mask, text = torch.rand(2, 3, 8, 8) * 2 - 1, torch.ones(1, 1, 8, 8), torch.tensor([[1.0, 0.2, -0.5]])
    loss = clip_loss(_FakeClip(), aug, x, mask, text)
    copies = aug.pool(x * mask).tile(3, 1, 1, 1) + shifts
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    d = spherical_distance(((copies.add(1).div(2) - mean) / std).mean((2, 3)), text)
    expected = d[[0, 2, 4]].mean() + d[[1, 3, 5]].mean()  # sample 0: copies 0, 2, 4; sample 1: 1, 3, 5
    torch.testing.assert_close(loss, expected)
    for wrong in (d.mean(), d[2::2].mean() + d[3::2].mean()):  # one mean over all; the augmented copies only
        assert not torch.isclose(loss, wrong)


# ---------------------------------------------------------------------------------------------- an edit


def test_the_background_at_every_step_is_the_noised_photo_and_the_result_is_blended(method):
    """After every step, outside the mask: the photo noised to that step's level i with the step's fresh noise
    (its code's postprocess_fn); inside: the guided sample. The result: the last x0 estimate inside, the photo
    exactly outside (enforce_background)."""
    from PIL import Image

    x = edit_input()
    method.trace = []
    try:
        out = method.edit(x)
        trace = method.trace
    finally:
        method.trace = None
    d, s = method.diffusion, method.s
    start = s.timestep_respacing - s.skip_timesteps - 1
    assert [t["i"] for t in trace] == list(range(start, -1, -1))
    size = method.arch.image_size
    photo = torch.from_numpy(np.array(Image.fromarray(x.image).resize((size, size), Image.LANCZOS)))
    init = photo.permute(2, 0, 1)[None].float() / 127.5 - 1
    m = torch.from_numpy(
        np.array(Image.fromarray(x.mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    )
    m = m.float()[None, None]
    for t in trace:
        noised = d.sqrt_abar[t["i"]] * init + d.sqrt_1m_abar[t["i"]] * t["noise"]
        torch.testing.assert_close(t["blended"] * (1 - m), (noised * (1 - m)).float())
        torch.testing.assert_close(t["blended"] * m, t["step"] * m)
        assert not torch.allclose(t["step"] * (1 - m), noised * (1 - m), atol=1e-3)  # the blend did something
    # the final blend, before the resize back: the photo outside the mask, the last x0 estimate inside
    mask_t = m
    final = method.sample  # rerun one sample with the same seed to get the tensor result
    torch.manual_seed(x.seed)
    result = final(init, mask_t, method.text_embedding(x.prompt), x.prompt)
    assert torch.equal(result * (1 - mask_t), init * (1 - mask_t))
    assert out.dtype == np.uint8 and out.shape == (RES, RES, 3)
    outside = x.soft == 0
    assert np.array_equal(out[outside], x.image[outside])  # the evaluation's pixel blend at R
    assert np.abs(out[x.mask].astype(int) - x.image[x.mask]).mean() > 5


def test_an_edit_is_deterministic_in_its_seed(method):
    a, b, c = method.edit(edit_input(0)), method.edit(edit_input(0)), method.edit(edit_input(1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert method.note and "256" not in method.note and f"{method.arch.image_size} px" in method.note


def test_the_result_is_cut_to_8_bits_as_its_code_saves_it(method, monkeypatch):
    """Its code saves x0 with torchvision's to_pil_image((x + 1) / 2 clamped to [0, 1]): times 255, truncated."""
    size = method.arch.image_size
    assert size == RES  # no resize on the way, so the 8-bit image is the edit (M_soft = 1 everywhere)
    levels = torch.linspace(-1.2, 1.2, 3 * size * size).reshape(1, 3, size, size) + 0.7 / 127.5
    monkeypatch.setattr(method, "run", lambda init, mask, prompt: levels)
    x = edit_input()
    out = method.edit(EditInput(x.image, x.mask, np.ones_like(x.soft), x.beta, x.prompt, x.seed))
    expected = np.floor(levels[0].permute(1, 2, 0).add(1).div(2).clamp(0, 1).mul(255).numpy()).astype(np.uint8)
    assert np.array_equal(out, expected)


def test_the_best_ranked_sample_is_returned(method, monkeypatch):
    """batch_size x iterations_num samples, ranked by the unaugmented CLIP distance of the masked result."""
    monkeypatch.setattr(method.s, "batch_size", 2)
    monkeypatch.setattr(method.s, "iterations_num", 3)
    size = method.arch.image_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(2, 3, size, size, generator=g) * 2 - 1 for _ in range(3)]
    calls = iter(batches)
    monkeypatch.setattr(method, "sample", lambda init, mask, text, prompt: next(calls))
    mask = torch.ones(1, 1, size, size)
    text = method.text_embedding("a smiling face")
    best = method.run(torch.zeros(1, 3, size, size), mask, "a smiling face")
    every = [r for b in batches for r in b]
    distances = [method.unaugmented_distance(r[None], mask, text) for r in every]
    assert len(set(distances)) == 6
    assert torch.equal(best[0], every[int(np.argmin(distances))])


# ------------------------------------------------------------------------------------------ unavailable


def test_missing_weights_make_it_unavailable_with_what_to_supply(tmp_path, weights):
    with pytest.raises(MethodUnavailable, match="256x256_diffusion_uncond.pt"):
        load_blended_diffusion(str(tmp_path / "none.pt"), str(weights[1]), SETTINGS, RES, "cpu")
    with pytest.raises(MethodUnavailable, match="evaluate.baselines.clip_vit_b16"):
        load_blended_diffusion(str(weights[0]), str(tmp_path / "no_clip"), SETTINGS, RES, "cpu")


def test_the_hub_clip_offline_is_unavailable_not_a_crash(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from facepaint.evaluation.methods.open_clip_model import OPENAI_VIT_B16, load_clip

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without internet
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MethodUnavailable, match="evaluate.baselines.clip_vit_b16"):
        load_clip(OPENAI_VIT_B16, "cpu")


def test_its_settings_are_checked():
    with pytest.raises(ValueError, match="evaluate.blended_diffusion.model"):
        BlendedDiffusionSettings(**{**vars(SETTINGS), "model": "huge"})
    with pytest.raises(ValueError, match="skip_timesteps"):
        BlendedDiffusionSettings(**{**vars(SETTINGS), "skip_timesteps": 10})
