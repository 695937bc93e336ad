"""facepaint.evaluation.methods.brushnet: the SD1.5 BrushNet architecture against TencentARC's checkpoint layout,
the injection
points in the frozen UNet, the real loading path on tiny models saved in the real layouts, sampling as its public
script does (examples/brushnet/test_brushnet.py: UniPC, steps, guidance, conditioning scale, mask layout), what is
unavailable without weights, and BrushNet's own blurred blending.

Facts verified on 2026-12-02 from TencentARC/BrushNet (src/diffusers/models/brushnet.py, the BrushNet branches
of its unet_2d_condition.py / unet_2d_blocks.py, pipelines/brushnet/pipeline_brushnet.py) and from the
checkpoint config that nullquant/ComfyUI-BrushNet ships (brushnet/brushnet.json; that loader identifies an
SD1.5 BrushNet file by 24 brushnet_down_blocks, 2 brushnet_mid_block and 30 brushnet_up_blocks tensors,
322 in all). The key list and the forward passes were also compared, outside this repository, with
ComfyUI-BrushNet's port of TencentARC's classes on current diffusers: identical keys and shapes, and
bit-identical BrushNet features and UNet outputs on the tiny configs (the pinned slice below)."""

import copy
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from facepaint.evaluation.methods import brushnet as bn
from facepaint.evaluation.methods.base import EditInput, MethodUnavailable
from facepaint.method.models import SD15_UNET, TINY_UNET_T2I, ModelLoadError, save_tiny_t2i
from facepaint.method.options import SamplingOptions
from tests.helpers import config

REPO = Path(__file__).resolve().parents[3]
RES = 64
CFG = config("sampling", SamplingOptions, steps=2)  # the evaluation's sampling (params.yaml sampling) at 2 steps

# sha256 of the sorted "key:shape" lines of the SD1.5 BrushNet state dict (322 tensors)
SD15_KEYS_SHA256 = "1a0129a909bc3e75d13ea82356223f34123d4e22ff98fc8cd519ffcfa7d47587"


def key_lines(model) -> str:
    return "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(model.state_dict().items()))


def test_full_size_config_has_the_checkpoint_keys_and_shapes():
    with torch.device("meta"):
        model = bn.BrushNetModel(**bn.SD15_BRUSHNET)
        unet = UNet2DConditionModel(**dict(SD15_UNET, in_channels=4))
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(state) == 322
    count = lambda part: sum(part in k for k in state)  # noqa: E731
    assert (count("brushnet_down_blocks."), count("brushnet_mid_block."), count("brushnet_up_blocks.")) == (24, 2, 30)
    # input: [noisy latent 4, masked-image latent 4, keep-mask 1] -> 320; no conv_in, no attention anywhere
    assert state["conv_in_condition.weight"] == (320, 9, 3, 3)
    assert "conv_in.weight" not in state and not any("attention" in k or "conv_out" in k for k in state)
    assert state["time_embedding.linear_1.weight"] == (1280, 320)
    # the mid block is two resnets (the fork's MidBlock2D), the up blocks three resnets each
    assert state["mid_block.resnets.1.conv2.weight"] == (1280, 1280, 3, 3) and count("mid_block.resnets.2.") == 0
    assert state["up_blocks.0.resnets.2.conv1.weight"] == (1280, 2560, 3, 3)
    assert state["up_blocks.3.resnets.2.conv_shortcut.weight"] == (320, 640, 1, 1)
    assert state["down_blocks.2.downsamplers.0.conv.weight"] == (1280, 1280, 3, 3) and count("down_blocks.3.down") == 0
    assert state["brushnet_down_blocks.11.weight"] == (1280, 1280, 1, 1)
    assert state["brushnet_up_blocks.14.weight"] == (320, 320, 1, 1)
    assert hashlib.sha256(key_lines(model).encode()).hexdigest() == SD15_KEYS_SHA256
    # one feature per injection point of SD1.5's UNet: 12 down, 15 up
    assert bn.feature_counts(unet) == (len(model.brushnet_down_blocks), len(model.brushnet_up_blocks)) == (12, 15)


def test_configs_other_than_the_sd15_brushnet_are_refused():
    with pytest.raises(ValueError, match="SD1.5 BrushNet"):
        bn.BrushNetModel(**dict(bn.TINY_BRUSHNET, mid_block_type="UNetMidBlock2D"))
    with pytest.raises(ValueError, match="class_embed_type"):
        bn.BrushNetModel(**dict(bn.TINY_BRUSHNET, class_embed_type="timestep"))


# ----------------------------------------------------------------------- tiny models, real layouts


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("brushnet")
    return save_tiny_t2i(root / "sd15"), bn.save_tiny_brushnet(root / bn.CHECKPOINT)


@pytest.fixture(scope="module")
def method(saved):
    base, ckpt = saved
    return bn.load_brushnet(str(base), str(ckpt), CFG, RES, device="cpu")


def edit_input(seed=0) -> EditInput:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:RES, 0:RES]
    base = np.stack([128 + 80 * np.sin(xx / 9 + c) * np.cos(yy / 11) for c in range(3)], axis=-1)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((RES, RES), bool)
    mask[24:44, 22:42] = True
    return EditInput(image, mask, mask.astype(np.float32), float(mask.mean()), "a smiling face", seed)


def test_saved_checkpoint_is_in_tencentarcs_layout_and_loads_both_ways(saved, method):
    _, ckpt = saved
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(bn.FILES)
    ours = bn.load_brushnet_model(str(ckpt))
    theirs = bn.BrushNetModel.from_pretrained(ckpt)  # diffusers' own loader reads the same folder
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    assert all(torch.equal(v, method.brushnet.state_dict()[k]) for k, v in ours.state_dict().items())


def test_a_checkpoint_with_a_renamed_key_fails_to_load(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    _, ckpt = saved
    state = load_file(ckpt / bn.FILES[1])
    state["brushnet_mid_blocks.weight"] = state.pop("brushnet_mid_block.weight")
    (tmp_path / bn.FILES[0]).write_text((ckpt / bn.FILES[0]).read_text())
    save_file(state, tmp_path / bn.FILES[1])
    with pytest.raises(ModelLoadError, match="brushnet_mid_block.weight"):
        bn.load_brushnet_model(str(tmp_path))
    config = (ckpt / bn.FILES[0]).read_text().replace('"in_channels"', '"in_channel"')
    (tmp_path / bn.FILES[0]).write_text(config)
    with pytest.raises(ModelLoadError, match="in_channel"):  # a renamed config field is not silently dropped
        bn.load_brushnet_model(str(tmp_path))


def test_edit_regenerates_the_face_deterministically(method):
    x = edit_input()
    out, again, other = method.edit(x), method.edit(x), method.edit(edit_input(seed=1))
    assert out.dtype == np.uint8 and out.shape == (RES, RES, 3)
    assert np.array_equal(out, again) and not np.array_equal(out, other)
    face = x.mask
    assert np.abs(out[face].astype(int) - x.image[face]).mean() > 10  # the face changed
    assert method.name == "brushnet" and method.label == "BrushNet" and len(method.modules()) == 4


def test_strength_below_one_starts_from_the_noised_photo(method):
    half = copy.copy(method)
    half.options = replace(CFG, strength=0.5)
    out = half.edit(edit_input())
    assert out.shape == (RES, RES, 3) and not np.array_equal(out, method.edit(edit_input()))


def test_conditioning_is_the_black_masked_photo_and_the_keep_mask(method):
    x = edit_input()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with torch.no_grad():
        cond = bn.condition(method.vae, x.image, x.mask, g())
        black = x.image * ~x.mask[..., None]
        latent = method.vae.encode(bn._to_pixels(black, "cpu", torch.float32)).latent_dist.sample(g())
    f = method.vae_scale_factor
    assert cond.shape == (1, 5, RES // f, RES // f)
    assert torch.equal(cond[0, 4], torch.from_numpy(~x.mask[::f, ::f]).float())  # 1 = keep, nearest (top-left)
    assert torch.equal(cond[:, :4], latent * method.vae.config.scaling_factor)


# ---------------------------------------------------------------------------- the injection points


def unet_inputs(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, RES // 8, RES // 8, generator=g)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor(600), ctx


def features_like(brushnet, x, value=None, seed=0):
    with torch.no_grad():
        f = brushnet(x, torch.tensor(600), torch.randn(x.shape[0], 5, *x.shape[2:]))
    g = torch.Generator().manual_seed(seed)
    make = (
        (lambda t: torch.full_like(t, value)) if value is not None else (lambda t: torch.randn(t.shape, generator=g))
    )
    return bn.BrushNetFeatures([make(t) for t in f.down], make(f.mid), [make(t) for t in f.up])


@torch.no_grad()
def test_zero_features_give_exactly_the_plain_unet(method):
    unet = method.unet
    x, t, ctx = unet_inputs(unet)
    plain = unet(x, t, ctx).sample
    assert torch.equal(bn.unet_forward(unet, x, t, ctx), plain)
    assert torch.equal(bn.unet_forward(unet, x, t, ctx, features_like(method.brushnet, x, 0.0)), plain)
    fresh = bn.BrushNetModel(**bn.TINY_BRUSHNET)  # zero-initialised convs: BrushNet starts as a no-op
    with torch.no_grad():
        zero = fresh(x, t, torch.randn(2, 5, *x.shape[2:]))
    assert torch.equal(bn.unet_forward(unet, x, t, ctx, zero), plain)


@torch.no_grad()
def test_every_injection_point_changes_the_prediction(method):
    unet = method.unet
    x, t, ctx = unet_inputs(unet)
    plain = bn.unet_forward(unet, x, t, ctx)
    zero = features_like(method.brushnet, x, 0.0)
    points = [("down", i) for i in range(len(zero.down))] + [("mid", 0)] + [("up", i) for i in range(len(zero.up))]
    for part, i in points:
        f = features_like(method.brushnet, x, 0.0)
        if part == "mid":
            f = f._replace(mid=torch.ones_like(f.mid))
        else:
            getattr(f, part)[i] = torch.ones_like(getattr(f, part)[i])
        assert not torch.allclose(bn.unet_forward(unet, x, t, ctx, f), plain), (part, i)
    with pytest.raises(ValueError, match="does not belong"):
        bn.unet_forward(unet, x, t, ctx, zero._replace(up=zero.up[:-1]))


@torch.no_grad()
def test_pinned_output_of_the_tiny_models():
    """A 3x3 slice of the UNet's prediction with the tiny BrushNet's features (seeded models), the numbers
    TencentARC's forward gives (compared via ComfyUI-BrushNet's port): any change in where or when a feature
    is added, or in BrushNet's own forward, changes them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        brushnet = bn.BrushNetModel(**bn.TINY_BRUSHNET)
        for conv in (*brushnet.brushnet_down_blocks, brushnet.brushnet_mid_block, *brushnet.brushnet_up_blocks):
            torch.nn.init.normal_(conv.weight, std=0.1)
            torch.nn.init.normal_(conv.bias, std=0.1)
        unet = UNet2DConditionModel(**TINY_UNET_T2I).eval()
        x, cond = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 8, 8)
        ctx, t = torch.randn(2, 77, 32), torch.tensor(500)
    out = bn.unet_forward(unet, x, t, ctx, brushnet(x, t, cond, 0.7))
    got = out[1, 0, :3, :3]
    assert torch.allclose(got, PINNED, atol=1e-4), got


# out[1, 0, :3, :3] of TencentARC's forward (their BrushNetModel and UNet2DConditionModel with
# down/mid/up_block_add_samples, as ported by ComfyUI-BrushNet) on the same seeded inputs
PINNED = torch.tensor(
    [[0.046569, -0.133042, 0.130565], [0.090197, 0.370460, 0.322051], [0.206414, -0.100936, 0.108304]]
)


# ------------------------------------------------------------------ sampling as its public script does


def settings(profile=None, **changes) -> bn.BrushNetSettings:
    """params.yaml's evaluate.brushnet (with `profile`'s overrides) and `changes`."""
    from facepaint.evaluation.run import EvalConfig
    from stages.common import load_params, section

    params = load_params(REPO / "params.yaml", profile=profile)
    return replace(section(params, "evaluate", EvalConfig).brushnet, **changes)


@pytest.mark.parametrize("profile", [None, "paper"])
def test_params_are_its_public_scripts_values(profile):
    """examples/brushnet/test_brushnet.py (TencentARC/BrushNet 0f9d9e5): base realisticVisionV60B1_v51VAE (l. 8),
    UniPC (l. 31), 50 steps (l. 50), guidance: the pipeline's default 7.5, negative prompt None -> "",
    brushnet_conditioning_scale 1.0 (l. 23), blended False (l. 15); the paper profile names that base."""
    b = settings(profile)
    assert (b.base, b.scheduler, b.steps, b.guidance_scale) == ("brushnet_base", "unipc", 50, 7.5)
    assert (b.conditioning_scale, b.blur_blend) == (1.0, False)
    options = b.options(config("sampling", SamplingOptions, negative_prompt="blurry", strength=0.5))
    assert (options.steps, options.guidance_scale, options.negative_prompt, options.strength) == (50, 7.5, "", 1.0)
    if profile == "paper":
        from facepaint.evaluation.run import EvalConfig
        from stages.common import load_params, section

        baselines = section(load_params(REPO / "params.yaml", profile="paper"), "evaluate", EvalConfig).baselines
        assert baselines.brushnet_base.endswith(bn.BASE) and baselines.brushnet_base != baselines.sd15_t2i
    ours = replace(b, scheduler="sampling")  # [ours]: the evaluation's sampling section as it is
    assert ours.options(CFG) is CFG


def their_scheduler(base):
    """What test_brushnet.py builds: the pipeline loaded by diffusers (its scheduler class from the base's
    model_index.json), then `UniPCMultistepScheduler.from_config(pipe.scheduler.config)` (l. 26-31)."""
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
    return UniPCMultistepScheduler.from_config(pipe.scheduler.config)


def test_the_scheduler_is_its_public_scripts_unipc(saved, method):
    """The method's scheduler is their script's UniPC over the base's scheduler config, with their fork's final
    sigma (the sigma of t = 0, scheduling_unipc_multistep.py l. 273; current diffusers' default ends at 0)."""
    import inspect

    from diffusers import UniPCMultistepScheduler

    base, _ = saved
    ours, theirs = method.make_scheduler(), their_scheduler(base)
    assert type(ours) is UniPCMultistepScheduler and method.sampler == "unipc"
    keys = set(inspect.signature(UniPCMultistepScheduler.__init__).parameters) - {"self", "final_sigmas_type"}
    assert {k: ours.config[k] for k in keys} == {k: theirs.config[k] for k in keys}
    assert (ours.config.solver_order, ours.config.solver_type, ours.config.predict_x0) == (2, "bh2", True)
    for n in (2, 7, 50):
        ours.set_timesteps(n)
        theirs.set_timesteps(n)
        assert torch.equal(ours.timesteps, theirs.timesteps) and len(ours.timesteps) == n
        assert torch.equal(ours.sigmas[:-1], theirs.sigmas[:-1])
        a0 = ours.alphas_cumprod[0]
        assert ours.sigmas[-1] == torch.tensor(((1 - a0) / a0) ** 0.5, dtype=torch.float32)


def test_an_edit_runs_its_scripts_steps_guidance_scale_and_conditioning(saved, method):
    """One edit with the params' settings (3 steps instead of 50): BrushNet is called at UniPC's timesteps, on
    the guidance batch [negative "", prompt], with conditioning scale 1.0 and the keep-mask layout of their
    pipeline (1 outside the mask, `mask.sum(1) < 0` on the [-1, 1] mask image, nearest to latent size)."""
    base, _ = saved
    b = settings(steps=3)
    edit = copy.copy(method)
    edit.options, edit.sampler = b.options(CFG), b.scheduler
    calls = []
    hook = edit.brushnet.register_forward_pre_hook(lambda module, args: calls.append(args))
    try:
        edit.edit(edit_input())
    finally:
        hook.remove()
    expected = their_scheduler(base)
    expected.set_timesteps(3)
    assert [int(args[1]) for args in calls] == expected.timesteps.tolist()
    x, f = edit_input(), method.vae_scale_factor
    image = torch.from_numpy(np.repeat(x.mask[..., None], 3, -1) * 255.0).permute(2, 0, 1)[None] / 127.5 - 1
    keep = (image.sum(1, keepdim=True) < 0).float()  # their pipeline's layout, from their mask image
    for sample, _, cond, scale in calls:
        assert sample.shape[0] == cond.shape[0] == 2 and scale == 1.0
        assert torch.equal(cond[:, 4:], F.interpolate(keep, size=cond.shape[-2:]).expand(2, 1, -1, -1))
    assert cond.shape[-1] == RES // f


@pytest.mark.slow
def test_its_public_script_runs_on_the_full_size_architecture(fixture_root, tmp_path):
    """BrushNet as its public script runs it (UniPC, guidance 7.5), on the full-size SD1.5 architecture and the
    full-size BrushNet (random weights), saved in their layouts and loaded through `build_methods` with the paper
    profile's settings (2 steps instead of 50), editing one fixture photo at 512 px. Prints times and peak RSS."""
    import resource

    from facepaint.common.images import load_rgb, resize_rgb
    from facepaint.data.celebamask import image_path
    from facepaint.data.masks import MaskConfig, annotation_union
    from facepaint.evaluation.methods.registry import build_methods
    from facepaint.evaluation.run import EvalConfig
    from facepaint.method.adapter import FaceAdapter
    from facepaint.method.artifact import freeze_all_but_kv, save_artifact
    from facepaint.method.masks import face_mask
    from facepaint.method.models import tiny_components
    from stages.common import load_params, section
    from tests.helpers import tiny_conditions

    start = time.perf_counter()
    save_tiny_t2i(tmp_path / "base", seed=0, full_size=True)  # the base's architecture: Realistic Vision's is SD1.5's
    bn.save_tiny_brushnet(tmp_path / bn.CHECKPOINT, seed=0, full_size=True)
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))  # only the artifact's resolution is read
    freeze_all_but_kv(comps.unet)
    artifact = save_artifact(
        tmp_path / "model", comps.unet, FaceAdapter(comps.text_encoder.config.hidden_size), tiny_conditions(512)
    )
    saved_s = time.perf_counter() - start
    params = load_params(REPO / "params.yaml", profile="paper")
    cfg = section(params, "evaluate", EvalConfig, dtype="fp32")
    b = replace(cfg.brushnet, steps=2)
    baselines = replace(cfg.baselines, brushnet_base=str(tmp_path / "base"), brushnet=str(tmp_path / bn.CHECKPOINT))
    start = time.perf_counter()
    methods, unavailable = build_methods(
        ["brushnet"],
        artifact.path,
        section(params, "sampling", SamplingOptions),
        device="cpu",
        dtype="fp32",
        baselines=baselines,
        brushnet=b,
        diptych=cfg.diptych,
        **({"blended_latent": cfg.blended_latent} if hasattr(cfg, "blended_latent") else {}),
    )
    load_s = time.perf_counter() - start
    assert unavailable == {}
    m = methods["brushnet"]
    assert tuple(m.brushnet.config.block_out_channels) == (320, 640, 1280, 1280) and m.unet.config.in_channels == 4
    assert m.base == str(tmp_path / "base") and type(m.make_scheduler()).__name__ == "UniPCMultistepScheduler"
    assert (m.options.steps, m.options.guidance_scale, m.options.negative_prompt) == (2, 7.5, "")

    i = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[0]
    image = resize_rgb(load_rgb(image_path(fixture_root, i)).image, 512)
    fm = face_mask(annotation_union(fixture_root, i, section(params, "masks", MaskConfig).parts)[0], 512, 8)
    x = EditInput(image, fm.mask, fm.mask.astype(np.float32), fm.beta, "a smiling woman with blond hair", 0)
    calls = []
    hook = m.brushnet.register_forward_pre_hook(lambda module, args: calls.append((int(args[1]), args[0].shape)))
    start = time.perf_counter()
    try:
        out = m.edit(x)
    finally:
        hook.remove()
    edit_s = time.perf_counter() - start
    expected = m.make_scheduler()
    expected.set_timesteps(2)
    assert [t for t, _ in calls] == expected.timesteps.tolist()
    assert all(shape == (2, 4, 64, 64) for _, shape in calls)  # [negative, prompt] latents at 512 px
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8 and (out[fm.mask] != image[fm.mask]).any()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\nBrushNet full size, UniPC 2 steps at 512 px on CPU: save {saved_s:.1f} s, load {load_s:.1f} s, "
        f"edit {edit_s:.1f} s; peak RSS {peak_gib:.1f} GiB"
    )


# ------------------------------------------------------------------------------------- unavailable


def test_missing_weights_are_unavailable_naming_the_files_within_seconds(tmp_path, saved):
    base, ckpt = saved
    empty = tmp_path / bn.CHECKPOINT
    empty.mkdir()
    start = time.perf_counter()
    with pytest.raises(MethodUnavailable) as e:
        bn.load_brushnet(str(tmp_path / "no-base"), str(empty), CFG, RES, device="cpu")
    assert time.perf_counter() - start < 2
    msg = str(e.value)
    assert "config.json" in msg and "diffusion_pytorch_model.safetensors" in msg and "drive.google.com" in msg
    assert "unet/diffusion_pytorch_model.safetensors" in msg and "tokenizer/" in msg
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg
    with pytest.raises(MethodUnavailable, match="lacks config.json"):  # half a checkpoint folder
        (empty / bn.FILES[1]).write_bytes((ckpt / bn.FILES[1]).read_bytes())
        bn.load_brushnet(str(base), str(empty), CFG, RES, device="cpu")


def test_hub_ids_offline_are_unavailable_within_seconds(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on a machine without internet, empty cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(MethodUnavailable) as e:
        bn.load_brushnet(bn.SD15_T2I, "some-user/BrushNet", CFG, 512, "cpu", subfolder=bn.CHECKPOINT)
    assert time.perf_counter() - start < 2
    msg = str(e.value)
    assert "some-user/BrushNet" in msg and bn.CHECKPOINT in msg and "config.json" in msg
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg and "HF_HUB_OFFLINE" in msg


@pytest.mark.slow
def test_hub_ids_in_an_offline_process_are_unavailable_within_seconds(offline):
    """The same in a fresh process with HF_HUB_OFFLINE and an empty HF_HOME (its imports take seconds)."""
    out = offline(
        "import time\n"
        "from facepaint.evaluation.methods.brushnet import load_brushnet\n"
        "from facepaint.evaluation.methods.base import MethodUnavailable\n"
        "from facepaint.method.options import SamplingOptions\n"
        "cfg = SamplingOptions(steps=2)\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_brushnet('stable-diffusion-v1-5/stable-diffusion-v1-5', 'some-user/BrushNet', cfg, 512, 'cpu',\n"
        "                  subfolder='segmentation_mask_brushnet_ckpt')\n"
        "except MethodUnavailable as e:\n"
        "    print(round(time.perf_counter() - start, 2)); print(e)\n"
    )
    seconds, msg = out.splitlines()[-2:]
    assert float(seconds) < 2, seconds
    assert "some-user/BrushNet" in msg and "segmentation_mask_brushnet_ckpt" in msg and "config.json" in msg
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg and "HF_HUB_OFFLINE" in msg


# ---------------------------------------------------------------------------------- blurred blending


def test_blur_blend_keeps_the_photo_far_from_the_mask_and_off_does_not(method):
    x = edit_input()
    blended = copy.copy(method)
    blended.blur_blend = True
    on, off = blended.edit(x), method.edit(x)
    ys, xs = np.nonzero(x.mask)
    yy, xx = np.mgrid[0:RES, 0:RES]
    far = (np.maximum(np.maximum(ys.min() - yy, yy - ys.max()), np.maximum(xs.min() - xx, xx - xs.max()))) > 10
    assert far.any() and np.array_equal(on[far], x.image[far])
    assert not np.array_equal(off[far], x.image[far])
    assert np.array_equal(on[x.mask], off[x.mask])  # alpha is 1 on M: the generation itself


def test_blur_blend_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 40), np.float64)
    mask[10:30, 5:25] = 1
    mask[0:3, 35:40] = 1  # at the border: cv2 reflects (BORDER_REFLECT_101)
    photo = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    result = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(mask * 255, (21, 21), 0) / 255
    alpha = (1 - (1 - mask) * (1 - blurred))[..., None]
    theirs = (photo * (1 - alpha) + result * alpha).astype(np.uint8)
    assert np.abs(bn.blur_blend(photo, result, mask > 0).astype(int) - theirs).max() <= 1
