"""facepaint.evaluation.methods.diptych on tiny random FLUX + inpainting-ControlNet models saved in the real
layouts and loaded through `load_diptych`: the edit's contract, the diptych and control input the pipeline
receives (the official code's layout, and ours for `mask: face`), its precision, the reference attention
enhancement on small attention modules, MethodUnavailable for missing weights, and the published ControlNet's
shapes (built on the meta device) against diffusers' own class."""

import json
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import FluxControlNetModel
from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor
from PIL import Image

from facepaint.evaluation.methods import diptych, registry
from facepaint.evaluation.methods.base import EditInput, MethodUnavailable
from facepaint.evaluation.methods.diptych import (
    DIPTYCH_PROMPT,
    FLUX_DEV,
    INPAINT_CONTROLNET,
    INPAINT_CONTROLNET_CONFIG,
    TINY_CONTROLNET,
    DiptychSettings,
    FluxInpaintControlNetModel,
    ReferenceAttentionProcessor,
    diptych_token_panels,
    load_diptych,
    save_tiny_flux,
    save_tiny_flux_controlnet,
)
from facepaint.evaluation.run import EvalConfig, _methods
from facepaint.method.options import SamplingOptions
from tests.helpers import config

# The official code's settings (chaehunshin/DiptychPrompting, diptych_prompting_inference.py: argparse defaults
# lines 284-291, pipeline call 359-373, bf16 lines 296-303, layout 329-352); `subject` is ours (its is the
# reference's class name). The tests shrink the panel and the steps only.
PUBLISHED = DiptychSettings(
    steps=30,
    guidance_scale=3.5,
    true_guidance_scale=3.5,
    negative_prompt="",
    controlnet_conditioning_scale=0.95,
    attention_scale=1.3,
    panel=768,
    pixel_offset=8,
    subject="person",
    remove_background=True,
    max_sequence_length=512,
    dtype="bf16",
    mask="right_panel",
)
# 48 px panels (8 px margins), a 96 x 48 diptych; 128 T5 tokens hold the prompt with the tiny tokenizer.
SETTINGS = replace(PUBLISHED, steps=2, panel=32, max_sequence_length=128)
FACE = replace(SETTINGS, mask="face", remove_background=False)  # [ours]: only M inpainted, the photo as reference
RES = 40  # the photo's resolution R (resized to the 32 px panel and back)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("diptych")
    return save_tiny_flux(root / "flux", seed=0), save_tiny_flux_controlnet(root / "controlnet", seed=0)


@pytest.fixture(scope="module")
def method(weights):
    return load_diptych(*map(str, weights), SETTINGS, device="cpu", torch_dtype=torch.float32)


def edit_input(seed=0) -> EditInput:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:RES, 0:RES]
    base = np.stack([128 + 80 * np.sin(xx / 7 + c) * np.cos(yy / 9) for c in range(3)], axis=-1)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((RES, RES), bool)
    mask[10:30, 12:28] = True
    return EditInput(image, mask, mask.astype(np.float32), float(mask.mean()), "a smiling woman with blond hair", seed)


# ------------------------------------------------------------------------------------------ the method


def test_edit_returns_the_photo_size_and_is_deterministic_in_its_seed(method):
    a, b, c = (method.edit(edit_input(s)) for s in (0, 0, 1))
    assert a.shape == (RES, RES, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert method.name == "diptych_prompting" and len(method.modules()) == 5


class Recorder:
    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipe(**kwargs)


def test_params_yaml_runs_the_official_code_s_values():
    """params.yaml's evaluate.diptych is the official code's, the demo's panel size apart (profiles/paper.yaml
    sets its 768)."""
    assert config("evaluate", EvalConfig).diptych == replace(PUBLISHED, panel=128)


def recorded_call(method, monkeypatch, x):
    """(the pipeline's keyword arguments, the ControlNet's control input) of one edit."""
    recorder, controls = Recorder(method.pipe), []
    monkeypatch.setattr(method, "pipe", recorder)
    hook = method.pipe.pipe.controlnet.register_forward_pre_hook(
        lambda mod, args, kwargs: controls.append(kwargs["controlnet_cond"]), with_kwargs=True
    )
    try:
        method.edit(x)
    finally:
        hook.remove()
    (call,) = recorder.calls
    (cond,) = {id(c): c for c in controls}.values()  # the same control input at every step
    return call, cond


def packed_keep(mask: np.ndarray) -> np.ndarray:
    """The ControlNet's extra 4 features: the keep-mask (1 = keep) nearest-neighbour at the 8x latent grid,
    packed 2 x 2 (alimama's prepare_image_with_mask)."""
    keep = 1 - mask[::8, ::8].astype(np.float32)
    h, w = keep.shape[0] // 2, keep.shape[1] // 2
    return keep.reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h * w, 4)


def test_the_pipeline_gets_the_official_code_s_diptych(method, monkeypatch):
    """The official layout (its make_diptych, mask_image, segment_image): a (side, 2 side) diptych; on the left
    the photo resized (bicubic) to the whole side, margins included, its background white (the segmentation:
    [ours] M); on the right black, masked whole, margins included; the left panel wholly kept."""
    x, side = edit_input(), SETTINGS.side
    call, cond = recorded_call(method, monkeypatch, x)
    image, mask = np.asarray(call["image"]), np.asarray(call["mask_image"]) > 127
    assert image.shape == (side, 2 * side, 3) and mask.shape == (side, 2 * side)
    assert not mask[:, :side].any() and mask[:, side:].all()
    assert (image[:, side:] == 0).all()
    full = np.asarray(Image.fromarray(x.image).resize((side, side), Image.BICUBIC))
    face = np.asarray(Image.fromarray(x.mask.astype(np.uint8) * 255).resize((side, side), Image.BILINEAR)) > 127
    assert 0 < face.mean() < 1 and np.array_equal(image[:, :side][face], full[face])
    assert (image[:, :side][~face] == 255).all()
    packed = packed_keep(mask)
    assert cond.shape[-1] == 68 and np.array_equal(cond[0, :, 64:].numpy(), packed)
    h, w = side // 16, 2 * side // 16
    assert (packed.reshape(h, w, 4)[:, : w // 2] == 1).all() and (packed.reshape(h, w, 4)[:, w // 2 :] == 0).all()


def test_the_result_is_the_right_panel_without_its_margin(method, monkeypatch):
    """Its code returns result.crop((width, 0, 2 width, height)).crop((o, o, width - o, height - o)); we resize
    that inner panel (bicubic) to R."""
    side, o, panel = SETTINGS.side, SETTINGS.pixel_offset, SETTINGS.panel
    rng = np.random.default_rng(3)
    generated = rng.integers(0, 256, (side, 2 * side, 3)).astype(np.float32) / 255
    monkeypatch.setattr(method, "pipe", lambda **kwargs: generated)
    out = method.edit(edit_input())
    inner = np.asarray(Image.fromarray(np.rint(generated * 255).astype(np.uint8)).crop((side, 0, 2 * side, side)))
    inner = inner[o : side - o, o : side - o]
    assert inner.shape == (panel, panel, 3)
    assert np.array_equal(out, np.asarray(Image.fromarray(inner).resize((RES, RES), Image.BICUBIC)))


def test_the_reference_segmentation_is_refined_as_the_official_code_refines_sam_s(method):
    """Its polygon_refinement: only the largest outer contour, filled (a hole inside M is kept, a smaller
    second region is whitened)."""
    x = edit_input()
    mask = np.zeros((RES, RES), bool)
    mask[4:28, 4:28] = True
    mask[12:18, 12:18] = False  # a hole
    mask[32:37, 32:37] = True  # a smaller second region
    d, side = method.diptych(replace(x, mask=mask)), SETTINGS.side
    left = d.image[:, :side]
    full = np.asarray(Image.fromarray(x.image).resize((side, side), Image.BICUBIC))
    at = lambda v: round(v * side / RES)  # noqa: E731  a photo coordinate in the panel
    assert np.array_equal(left[at(15), at(15)], full[at(15), at(15)])  # the hole's centre: the photo
    assert (left[at(34.5), at(34.5)] == 255).all()  # the second region's centre: white
    assert (left[0, 0] == 255).all() and np.array_equal(left[at(6), at(6)], full[at(6), at(6)])


def test_mask_face_is_ours_the_photo_twice_and_the_face_masked_in_the_right_panel_only(method, monkeypatch):
    monkeypatch.setattr(method, "settings", FACE)
    x, side, o = edit_input(), FACE.side, FACE.pixel_offset
    recorder, controls = Recorder(method.pipe), []
    monkeypatch.setattr(method, "pipe", recorder)
    hook = method.pipe.pipe.controlnet.register_forward_pre_hook(
        lambda mod, args, kwargs: controls.append(kwargs["controlnet_cond"]), with_kwargs=True
    )
    try:
        method.edit(x)
    finally:
        hook.remove()
    (call,) = recorder.calls
    image, mask = np.asarray(call["image"]), np.asarray(call["mask_image"]) > 127
    assert image.shape == (side, 2 * side, 3) and mask.shape == (side, 2 * side)
    left, right = image[:, :side], image[:, side:]
    assert np.array_equal(left, right)  # the reference is the photo itself (remove_background off)
    photo = np.asarray(Image.fromarray(x.image).resize((SETTINGS.panel,) * 2, Image.BICUBIC))
    assert np.array_equal(right[o:-o, o:-o], photo)  # the photo at the inner panel size, aligned
    assert np.array_equal(right[:o, o:-o], np.broadcast_to(photo[:1], (o, *photo.shape[1:])))  # replicated edge
    face = np.asarray(Image.fromarray(x.mask.astype(np.uint8) * 255).resize((SETTINGS.panel,) * 2)) > 127
    assert not mask[:, :side].any() and not mask[:o].any() and not mask[:, side : side + o].any()
    assert np.array_equal(mask[o:-o, side + o : -o], face)
    assert call["prompt"] == (
        "A diptych with two side-by-side images of same person. On the left, a photo of person. On the right, "
        "replicate this person exactly but as a smiling woman with blond hair"
    )
    assert call["controlnet_conditioning_scale"] == 0.95 and call["true_guidance_scale"] == 3.5
    # The ControlNet's extra 4 features are the keep-mask (1 = keep) at latent resolution, packed 2 x 2.
    (cond,) = {id(c): c for c in controls}.values()  # the same control input at every step
    packed = packed_keep(mask)
    h, w = mask.shape[0] // 16, mask.shape[1] // 16
    assert cond.shape[-1] == 68 and np.array_equal(cond[0, :, 64:].numpy(), packed)
    assert packed.reshape(h, w, 4)[:, : w // 2].min() == 1 and packed.min() == 0  # left panel fully kept


def test_remove_background_puts_the_reference_face_on_white_with_mask_face_too(method, monkeypatch):
    monkeypatch.setattr(method, "settings", replace(FACE, remove_background=True))
    d, side = method.diptych(edit_input()), FACE.side
    face = d.mask[:, side:]
    assert (d.image[:, :side][~face] == 255).all()
    assert np.array_equal(d.image[:, :side][face], d.image[:, side:][face])


def test_the_precision_is_the_official_code_s_bf16_on_a_gpu_and_fp32_on_the_cpu():
    assert PUBLISHED.torch_dtype(torch.device("cuda")) == torch.bfloat16
    assert PUBLISHED.torch_dtype(torch.device("cpu")) == torch.float32
    assert replace(PUBLISHED, dtype="fp16").torch_dtype(torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="diptych dtype"):
        replace(PUBLISHED, dtype="float16")
    with pytest.raises(ValueError, match="diptych mask"):
        replace(PUBLISHED, mask="M")


def test_build_methods_loads_diptych_in_its_own_dtype_not_evaluate_dtype(tiny_artifact, monkeypatch):
    """evaluate.dtype (fp16 here: the SD1.5 methods') does not reach FLUX: the evaluation's build_methods loads it
    in evaluate.diptych.dtype (pick_dtype made device-blind, so that the CPU shows what a GPU would get)."""
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    monkeypatch.setattr(diptych, "pick_dtype", lambda dtype, device: table[dtype])
    calls = []

    def load(*args, **kwargs):
        calls.append(kwargs)
        raise MethodUnavailable("recorded")

    monkeypatch.setattr(registry, "load_diptych", load)
    cfg = replace(config("evaluate", EvalConfig), dtype="fp16", diptych=SETTINGS)
    _methods(["diptych_prompting"], tiny_artifact.path, cfg, config("sampling", SamplingOptions, steps=2), "cpu")
    assert [c["torch_dtype"] for c in calls] == [torch.bfloat16]


def test_wrong_inputs_are_refused(method):
    x = edit_input()
    with pytest.raises(ValueError, match="square uint8"):
        method.edit(replace(x, mask=x.mask[:-1]))
    with pytest.raises(ValueError, match="multiple of 16.*768 and 8"):
        replace(PUBLISHED, pixel_offset=5)
    assert PUBLISHED.side == 784  # the official 768 px panels with their 8 px margins


# ------------------------------------------------------------------------- reference attention


GRID = (3, 4)  # a 3 x 4 token diptych: columns 0-1 left panel, 2-3 right panel
TEXT = 5


def attention_module(double: bool) -> FluxAttention:
    torch.manual_seed(0)
    if double:  # FluxTransformerBlock's: text and image streams
        return FluxAttention(32, heads=2, dim_head=16, added_kv_proj_dim=32, out_dim=32, bias=True, eps=1e-6)
    return FluxAttention(32, heads=2, dim_head=16, out_dim=32, bias=True, eps=1e-6, pre_only=True)  # single-stream


def attention_inputs(double: bool):
    torch.manual_seed(1)
    n = GRID[0] * GRID[1]
    rope = (torch.randn(TEXT + n, 16), torch.randn(TEXT + n, 16))
    if double:
        return dict(hidden_states=torch.randn(2, n, 32), encoder_hidden_states=torch.randn(2, TEXT, 32)), rope
    return dict(hidden_states=torch.randn(2, TEXT + n, 32)), rope  # [text, image] concatenated


def run(module, processor, double, **kwargs):
    module.set_processor(processor)
    inputs, rope = attention_inputs(double)
    out = module(**inputs, image_rotary_emb=rope, **kwargs)
    return torch.cat([out[1], out[0]], dim=1) if double else out  # [text, image] rows


@pytest.mark.parametrize("double", [True, False])
def test_scale_1_is_exactly_diffusers_attention(double):
    module = attention_module(double)
    default = run(module, FluxAttnProcessor(), double)
    ours = run(module, ReferenceAttentionProcessor(1.0), double, diptych_grid=GRID)
    assert torch.equal(ours, default)
    # The explicit path (taken for any scale != 1) computes the same attention as diffusers' processor.
    explicit = run(module, ReferenceAttentionProcessor(1 + 1e-12), double, diptych_grid=GRID)
    assert torch.allclose(explicit, default, atol=1e-6)


@pytest.mark.parametrize("double", [True, False])
def test_scale_above_1_strengthens_right_panel_queries_on_left_panel_keys_only(double):
    module, n = attention_module(double), GRID[0] * GRID[1]
    right, left = diptych_token_panels(GRID, TEXT + n)
    assert right.tolist() == [TEXT + i for i in range(n) if i % 4 >= 2]
    assert left.tolist() == [False] * TEXT + [i % 4 < 2 for i in range(n)]
    # The weights: right-panel rows on left-panel keys grow by lambda, nothing else changes, no renormalisation.
    inputs, rope = attention_inputs(double)
    query, key, _ = ReferenceAttentionProcessor.project(
        module, inputs["hidden_states"], inputs.get("encoder_hidden_states"), rope
    )
    plain = ReferenceAttentionProcessor(1.0).weights(query[:, right], key, left)
    strong = ReferenceAttentionProcessor(1.3).weights(query[:, right], key, left)
    assert torch.allclose(strong[..., left], 1.3 * plain[..., left]) and torch.equal(
        strong[..., ~left], plain[..., ~left]
    )
    sums = strong.sum(-1)
    assert torch.allclose(sums, 1 + 0.3 * plain[..., left].sum(-1)) and (sums > 1).all()
    # The outputs: text and left-panel rows are diffusers' own, right-panel rows change.
    default = run(module, FluxAttnProcessor(), double)
    ours = run(module, ReferenceAttentionProcessor(1.3), double, diptych_grid=GRID)
    others = torch.ones(TEXT + n, dtype=torch.bool)
    others[right] = False
    assert torch.allclose(ours[:, others], default[:, others], atol=1e-6)
    assert (ours[:, right] - default[:, right]).abs().amin(dim=-1).gt(0).all()


def test_the_weights_are_the_official_codes_in_bf16():
    """Its processor (diptych_prompting_inference.py, the `attn_enforce` branch): `(einsum(q, k) * scale).softmax(-1)`
    in the model's dtype, then right-panel image rows on left-panel image columns `*= attn_enforce`, all in bf16;
    written here as their (B, H, S, D) layout on the diptych's (height, width) token grid."""
    module, n = attention_module(True).to(torch.bfloat16), GRID[0] * GRID[1]
    inputs, rope = attention_inputs(True)
    inputs = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    query, key, _ = ReferenceAttentionProcessor.project(
        module, inputs["hidden_states"], inputs["encoder_hidden_states"], rope
    )
    right, left = diptych_token_panels(GRID, TEXT + n)
    ours = ReferenceAttentionProcessor(1.3).weights(query[:, right], key, left)
    q, k = query.transpose(1, 2), key.transpose(1, 2)  # (B, H, S, D)
    probs = (torch.einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5).softmax(dim=-1)
    h, w = GRID
    img = probs[:, :, -n:, -n:].reshape(2, 2, h, w, h, w)
    img[:, :, :, w // 2 :, :, : w // 2] *= 1.3
    probs[:, :, -n:, -n:] = img.reshape(2, 2, n, n)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, probs[:, :, right])


def test_the_enhancement_needs_the_token_grid():
    with pytest.raises(ValueError, match="diptych_grid"):
        run(attention_module(True), ReferenceAttentionProcessor(1.3), True)


def test_every_transformer_attention_gets_the_processor_and_the_controlnet_keeps_diffusers(method):
    processors = method.pipe.transformer.attn_processors
    assert len(processors) == 2  # the tiny transformer: one double- and one single-stream block
    assert all(isinstance(p, ReferenceAttentionProcessor) and p.scale == 1.3 for p in processors.values())
    assert all(type(p) is FluxAttnProcessor for p in method.pipe.controlnet.attn_processors.values())


# ----------------------------------------------------------------------------------- missing weights


def test_missing_local_files_are_named_within_a_second(weights, tmp_path):
    flux = tmp_path / "flux"
    shutil.copytree(weights[0], flux)
    (flux / "text_encoder_2" / "model.safetensors").unlink()
    shutil.rmtree(flux / "tokenizer_2")
    start = time.perf_counter()
    with pytest.raises(MethodUnavailable) as err:
        load_diptych(str(flux), str(tmp_path / "nowhere"), SETTINGS, device="cpu", torch_dtype=torch.float32)
    assert time.perf_counter() - start < 1.0
    msg = str(err.value)
    for name in (
        "text_encoder_2/model*.safetensors",
        "tokenizer_2/tokenizer_config.json",
        "tokenizer_2/tokenizer.json",
    ):
        assert name in msg
    assert "transformer/config.json" not in msg  # present files are not listed as missing
    assert f"{tmp_path / 'nowhere'} is not a directory" in msg and "diffusion_pytorch_model.safetensors" in msg
    assert "gated" in msg and "licence" in msg and f"hf download {FLUX_DEV}" in msg


def test_a_controlnet_without_the_mask_channels_is_refused(weights, tmp_path):
    net = tmp_path / "controlnet"  # a plain FLUX ControlNet (e.g. a canny one): control = image latents only
    FluxControlNetModel(
        **{k: v for k, v in TINY_CONTROLNET.items() if k != "extra_condition_channels"}
    ).save_pretrained(net)
    with pytest.raises(MethodUnavailable, match="not an inpainting ControlNet"):
        load_diptych(str(weights[0]), str(net), SETTINGS, device="cpu", torch_dtype=torch.float32)


def test_hub_ids_offline_are_unavailable_within_a_second_and_say_how_to_get_them(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on a machine without internet,
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # with an empty cache
    start = time.perf_counter()
    with pytest.raises(MethodUnavailable) as err:
        load_diptych(FLUX_DEV, INPAINT_CONTROLNET, PUBLISHED, device="cpu", torch_dtype=torch.bfloat16)
    assert time.perf_counter() - start < 1.0
    msg = str(err.value)
    assert FLUX_DEV in msg and INPAINT_CONTROLNET in msg and "HF_HUB_OFFLINE" in msg
    for part in (
        "transformer/",
        "vae/",
        "text_encoder/",
        "text_encoder_2/",
        "tokenizer/",
        "tokenizer_2/",
        "scheduler/",
    ):
        assert part in msg
    assert "licence" in msg and "config.json and diffusion_pytorch_model.safetensors" in msg


# --------------------------------------------------------------------- the published ControlNet


def test_the_published_controlnet_needs_our_subclass(weights):
    """Facts checked against the public checkpoint alimama-creative/FLUX.1-dev-Controlnet-Inpainting-Beta (its
    config.json as published: FluxControlNetModel, 6 double-stream blocks, 0 single-stream, guidance embedding,
    extra_condition_channels 4; one bf16 diffusion_pytorch_model.safetensors of 4.28 GB) and alimama's model code
    (controlnet_x_embedder = Linear(in_channels + extra_condition_channels, inner_dim)). The key names below are
    those of diffusers' FLUX blocks, which alimama's class copies; the file's header itself could not be read here."""
    assert INPAINT_CONTROLNET_CONFIG == dict(
        patch_size=1,
        in_channels=64,
        num_layers=6,
        num_single_layers=0,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
        extra_condition_channels=4,
    )
    plain = {k: v for k, v in INPAINT_CONTROLNET_CONFIG.items() if k != "extra_condition_channels"}
    with torch.device("meta"):
        ours = FluxInpaintControlNetModel(**INPAINT_CONTROLNET_CONFIG).state_dict()
        theirs = FluxControlNetModel(**plain).state_dict()
    assert ours.keys() == theirs.keys() and len(ours) == 222
    assert {k for k in ours if ours[k].shape != theirs[k].shape} == {"controlnet_x_embedder.weight"}
    assert ours["controlnet_x_embedder.weight"].shape == (3072, 68)  # (16 latent + 1 mask channels) x 2 x 2
    assert theirs["controlnet_x_embedder.weight"].shape == (3072, 64)
    assert not any(k.startswith(("single_transformer_blocks", "controlnet_single_blocks")) for k in ours)
    assert "time_text_embed.guidance_embedder.linear_1.weight" in ours and "controlnet_blocks.5.weight" in ours
    params = sum(t.numel() for t in ours.values())
    assert params == 2_140_889_088 and round(params * 2 / 1e9, 2) == 4.28  # bf16 bytes = the published file's size
    # diffusers' class ignores extra_condition_channels and cannot load such a checkpoint; ours loads it as saved.
    with pytest.raises(ValueError, match="controlnet_x_embedder.weight expected shape"):
        FluxControlNetModel.from_pretrained(weights[1])
    config = json.loads((weights[1] / "config.json").read_text())
    assert config["_class_name"] == "FluxControlNetModel" and config["extra_condition_channels"] == 4
    assert FluxInpaintControlNetModel.from_pretrained(weights[1]).controlnet_x_embedder.in_features == 68


def test_the_prompt_template_is_the_official_one():
    assert DIPTYCH_PROMPT.format(subject="bear plushie", target="a photo of a bear plushie surfing") == (
        "A diptych with two side-by-side images of same bear plushie. On the left, a photo of bear plushie. "
        "On the right, replicate this bear plushie exactly but as a photo of a bear plushie surfing"
    )
