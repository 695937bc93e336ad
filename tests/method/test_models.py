from dataclasses import asdict

import pytest
import torch

from facepaint.method import models
from facepaint.method.models import ModelConfig, ModelLoadError, load_components
from tests.helpers import config


@pytest.fixture(scope="module")
def tiny():
    return models.tiny_components(seed=0)


def test_tiny_has_sd15_structure(tiny):
    unet, vae, te = tiny.unet, tiny.vae, tiny.text_encoder
    assert unet.config.in_channels == 9 and unet.config.out_channels == 4
    assert unet.config.cross_attention_dim == te.config.hidden_size
    assert list(unet.config.down_block_types) == list(models.SD15_UNET["down_block_types"])
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8 and vae.config.latent_channels == 4
    assert te.config.max_position_embeddings == 77 and te.config.vocab_size == 49408
    with torch.no_grad():
        z = vae.encode(torch.randn(1, 3, 64, 64)).latent_dist.mean
        ids = tiny.tokenizer(["a face"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        emb = te(ids).last_hidden_state
        eps = unet(torch.randn(1, 9, 8, 8), 500, encoder_hidden_states=emb).sample
    assert z.shape == (1, 4, 8, 8) and emb.shape == (1, 77, 32) and eps.shape == (1, 4, 8, 8)


def test_tiny_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = models.tiny_components(seed=1, parts=("unet", "vae"))
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = models.tiny_components(seed=1, parts=("vae",))
    c = models.tiny_components(seed=2, parts=("vae",))
    sa, sb, sc = a.vae.state_dict(), b.vae.state_dict(), c.vae.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_tokenizer_is_the_real_clip_bpe(tiny):
    import open_clip

    tok = tiny.tokenizer
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    texts = [
        "a photo of a smiling young woman with wavy blond hair and earrings",
        "Close-up portrait of a MAN with a 5 o'clock shadow, wearing eyeglasses!",
        "rosy-cheeked   person\twith bushy eyebrows & a goatee",
    ]
    ours = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    theirs = open_clip.tokenize(texts, context_length=77)
    for o, t in zip(ours, theirs):
        n = int((t != 0).sum())  # open_clip pads with 0, SD's tokenizer with <|endoftext|>
        assert o[:n].tolist() == t[:n].tolist()
    long = tok(" ".join(["face"] * 200), truncation=True, max_length=77).input_ids
    assert len(long) == 77 and long[-1] == 49407


def test_pretrained_path_loads_a_saved_pipeline(tiny, tmp_path):
    """The `pretrained` code path (hub id or directory) on a directory saved by save_pipeline."""
    models.save_pipeline(tiny, tmp_path / "pipe")
    assert (tmp_path / "pipe" / "model_index.json").is_file()
    assert (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_components(config("model", ModelConfig, source="pretrained", pretrained=str(tmp_path / "pipe")))
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(tiny, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert loaded.tokenizer("a smiling man").input_ids == tiny.tokenizer("a smiling man").input_ids
    assert (
        loaded.scheduler.config.beta_schedule == "scaled_linear"
        and loaded.scheduler.config.num_train_timesteps == 1000
    )
    assert torch.allclose(loaded.scheduler.alphas_cumprod, tiny.scheduler.alphas_cumprod)
    half = load_components(
        config("model", ModelConfig, source="pretrained", pretrained=str(tmp_path / "pipe")),
        parts=("vae",),
        torch_dtype=torch.float16,
    )
    assert half.vae.dtype == torch.float16 and half.unet is None


def test_pretrained_refuses_a_non_inpainting_unet(tmp_path):
    comps = models.tiny_components(seed=0)
    from diffusers import UNet2DConditionModel

    comps.unet = UNet2DConditionModel(**dict(models.TINY_UNET, in_channels=4))
    models.save_pipeline(comps, tmp_path / "t2i")
    with pytest.raises(ModelLoadError, match="4 input channels.*inpainting"):
        load_components(
            config("model", ModelConfig, source="pretrained", pretrained=str(tmp_path / "t2i")), parts=("unet",)
        )


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="is not a directory"):
        load_components(
            config("model", ModelConfig, source="pretrained", pretrained=str(tmp_path / "nothing")), parts=("vae",)
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="local model directory"):
        load_components(
            config("model", ModelConfig, source="pretrained", pretrained=str(tmp_path / "empty")), parts=("vae",)
        )


def test_unreachable_hub_id_says_how_to_supply_the_weights(offline):
    """Offline (HF_HUB_OFFLINE, as on a machine without internet) the default id fails clearly."""
    msg = offline(
        "from facepaint.method.models import *\n"
        "cfg = ModelConfig(source='pretrained', pretrained='stable-diffusion-v1-5/stable-diffusion-inpainting',\n"
        "                  revision=None, variant=None, seed=0)\n"
        "try:\n    load_components(cfg, parts=('vae',))\n"
        "except ModelLoadError as e:\n    print(e)\n"
    )
    assert "stable-diffusion-v1-5/stable-diffusion-inpainting" in msg
    assert "huggingface-cli download" in msg and "model.pretrained" in msg and "model.source: tiny" in msg


def test_config_validation():
    with pytest.raises(ValueError, match="model.source"):
        ModelConfig(**{**asdict(config("model", ModelConfig)), "source": "sd15"})
    with pytest.raises(ValueError, match="unknown model part"):
        load_components(config("model", ModelConfig), parts=("vae", "controlnet"))
    assert models.pick_dtype("bf16", torch.device("cpu")) == torch.float32
    assert models.pick_dtype("bf16", torch.device("cuda")) == torch.bfloat16


def test_sd15_configs_match_the_published_model():
    """The full-size architecture built from config (on the meta device: no memory, no download)
    has SD1.5 inpainting's parameter counts."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**models.SD15_UNET)
        vae = AutoencoderKL(**models.SD15_VAE)
        te = CLIPTextModel(CLIPTextConfig(**models.SD15_TEXT))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    kv = sum(p.numel() for n, p in unet.named_parameters() if "attn2.to_k" in n or "attn2.to_v" in n)
    assert abs(count(unet) - 859.5e6) < 0.1e6
    assert abs(kv - 19.17e6) < 0.01e6
    assert abs(count(vae) - 83.65e6) < 0.1e6
    assert abs(count(te) - 123.06e6) < 0.1e6


def test_hub_unreachable_answers_fast_and_names_the_reason(tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert models.hub_unreachable(str(tmp_path)) is None  # a local directory is always tried
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    reason = models.hub_unreachable("someone/not-cached-model")
    assert "not in the local Hugging Face cache" in reason and "HF_HUB_OFFLINE" in reason
