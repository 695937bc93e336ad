"""All model loading lives here: the pretrained SD1.5 inpainting components, or random ones built
from config (tiny for tests and the demo, full-size for benchmarks).

`model.source` in params.yaml picks one:
- `pretrained`: a Hugging Face id or a local directory in the diffusers layout (model_index.json,
  vae/, unet/, text_encoder/, tokenizer/, scheduler/); params.yaml names SD1.5 inpainting.
- `tiny`: SD1.5's architecture (9-channel UNet with cross-attention down/up blocks, 8x VAE,
  CLIP text encoder, the real 49,408-token CLIP BPE tokenizer) at tiny widths, randomly
  initialised from `model.seed`. Downloads nothing; a 128 px forward takes milliseconds on a CPU.
- `random`: the full-size SD1.5 inpainting architecture with random weights (speed and memory are
  those of the real model; used by the benchmarks).

The pretrained path is tested by saving a tiny pipeline with `save_pipeline` and loading that
directory through exactly the code a hub id takes.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from facepaint.common.checks import MAX_SEED, check_fields, check_number
from facepaint.common.errors import FacepaintError

SD15_INPAINTING = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SOURCES = ("pretrained", "tiny", "random")
PARTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")

# The published SD1.5 inpainting configs (the hub's unet/vae/text_encoder config.json), so the
# full-size architecture can be built without a download.
SD15_UNET = dict(
    sample_size=64,
    in_channels=9,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
    center_input_sample=False,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    act_fn="silu",
    scaling_factor=0.18215,
)
SD15_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    pad_token_id=1,
    eos_token_id=2,
)
# SD1.5's noise schedule (scheduler/scheduler_config.json); training uses it as a DDPM schedule.
SD15_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)

# Same structure, tiny widths: 4 resolution levels so the VAE downsamples by 8 like SD's, three
# cross-attention levels like SD's UNet. Widths are multiples of the group-norm groups.
TINY_UNET = dict(
    SD15_UNET,
    sample_size=16,
    layers_per_block=1,
    block_out_channels=(32, 32, 64, 64),
    cross_attention_dim=32,
    attention_head_dim=4,
    norm_num_groups=8,
)
TINY_VAE = dict(SD15_VAE, sample_size=128, layers_per_block=1, block_out_channels=(16, 16, 32, 32), norm_num_groups=8)
TINY_TEXT = dict(
    SD15_TEXT,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    projection_dim=32,
)


class ModelLoadError(FacepaintError):
    """A model could not be loaded; the message says what is missing and how to supply it."""


def facexlib_cache(file: str) -> Path:
    """Where facexlib's own downloader keeps a weights file (site-packages/facexlib/weights)."""
    import facexlib

    return Path(facexlib.__file__).parent / "weights" / file


def facexlib_weights(what: str, file: str, url: str, given, hint: str, download: bool = True) -> Path:
    """A facexlib model's weights (BiSeNet, RetinaFace): `given` (a path that must exist), else facexlib's cached
    file, else a download into that cache (unless not `download`); ModelLoadError naming `what` and the file,
    ending with `hint` (how to supply it), otherwise."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ModelLoadError(f"{what} weights not found at {path}. {hint}")
        return path
    path = facexlib_cache(file)
    if path.is_file():
        return path
    if not download:
        raise ModelLoadError(f"{what} weights {file} are not at {path}. {hint}")
    from facexlib.utils import load_file_from_url

    try:
        return Path(load_file_from_url(url=url, model_dir="facexlib/weights", progress=True))
    except Exception as e:  # URLError, HTTPError, socket timeouts...
        raise ModelLoadError(
            f"{what} weights {file} are not at {path} and could not be downloaded from {url} "
            f"({type(e).__name__}: {e}). {hint}"
        ) from e


@dataclass
class ModelConfig:  # params.yaml `model`
    source: str  # tiny | pretrained | random
    pretrained: str  # a Hugging Face id or a local diffusers directory (source: pretrained)
    revision: str | None
    variant: str | None  # e.g. "fp16" to fetch the half-precision weight files
    seed: int  # initialisation seed for tiny/random

    def __post_init__(self):
        check_fields(self, "model")
        if self.source not in SOURCES:
            raise ValueError(f"model.source must be one of {SOURCES}, got {self.source!r}")
        check_number("model.seed", self.seed, 0, MAX_SEED, whole=True)

    @property
    def name(self) -> str:
        """What produced the weights, for provenance."""
        return self.pretrained if self.source == "pretrained" else f"{self.source}-random(seed={self.seed})"

    @property
    def demo_notice(self) -> str | None:
        """What a user must be told about a model built on randomly initialised weights (the demo's): its edits
        are noise, and how to get a real one. None for pretrained weights."""
        if self.source == "pretrained":
            return None
        size = "a tiny" if self.source == "tiny" else "a full-size"
        return (
            f"this is a demo model ({size} network with random weights, {self.name}): its edits are noise. "
            "For real edits, train it from Stable Diffusion 1.5 inpainting's weights (model.source: pretrained; "
            'docs/pipeline.md, "The paper\'s configuration")'
        )


@dataclass
class Components:
    vae: object = None
    unet: object = None
    text_encoder: object = None
    tokenizer: object = None
    scheduler: object = None  # the training noise schedule (DDPMScheduler)
    name: str = ""


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given (e.g. 'cuda:1')."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'fp16'/'bf16'/'fp32'; half precision falls back to fp32 on the CPU (slow and lossy there)."""
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype not in table:
        raise ValueError(f"dtype must be one of {list(table)}, got {dtype!r}")
    if device.type == "cpu":
        return torch.float32
    return table[dtype]


# ---------------------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode map (the table every CLIP BPE vocabulary is built on)."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[str]]:
    """The CLIP BPE vocabulary and merges, rebuilt from the merges file that open_clip ships.

    transformers reads vocab.json + merges.txt; open_clip ships OpenAI's original
    bpe_simple_vocab_16e6.txt.gz. The construction below is OpenAI's (CLIP's simple_tokenizer.py)
    and yields the 49,408-entry vocabulary of openai/clip-vit-large-patch14, i.e. SD1.5's tokenizer.
    We write it ourselves only because no registry package ships the HF-format files.
    """
    import open_clip

    path = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    if not path.is_file():
        raise ModelLoadError(f"CLIP BPE merges not found at {path}; reinstall open_clip_torch")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def clip_tokenizer():
    """SD1.5's CLIP tokenizer (77 tokens, pad = <|endoftext|>), built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], model_max_length=77)


# ------------------------------------------------------------------------------------- random init


def _random_components(unet_cfg: dict, vae_cfg: dict, text_cfg: dict, seed: int, parts, name: str) -> Components:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    comps = Components(name=name)
    # fork_rng keeps the caller's global RNG untouched; each model gets its own derived seed so
    # that building only the VAE gives the same VAE as building everything.
    with torch.random.fork_rng(devices=[]):
        if "vae" in parts:
            torch.manual_seed(seed * 1000 + 1)
            comps.vae = AutoencoderKL(**vae_cfg)
        if "unet" in parts:
            torch.manual_seed(seed * 1000 + 2)
            comps.unet = UNet2DConditionModel(**unet_cfg)
        if "text_encoder" in parts:
            torch.manual_seed(seed * 1000 + 3)
            comps.text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    if "tokenizer" in parts:
        comps.tokenizer = clip_tokenizer()
    if "scheduler" in parts:
        comps.scheduler = DDPMScheduler.from_config(SD15_SCHEDULE)
    for m in (comps.vae, comps.unet, comps.text_encoder):
        if m is not None:
            m.eval()
    return comps


def tiny_components(seed: int = 0, parts=PARTS) -> Components:
    return _random_components(TINY_UNET, TINY_VAE, TINY_TEXT, seed, parts, f"tiny-random(seed={seed})")


def sd15_random_components(seed: int = 0, parts=PARTS) -> Components:
    return _random_components(SD15_UNET, SD15_VAE, SD15_TEXT, seed, parts, f"random(seed={seed})")


# --------------------------------------------------------------------------------------- pretrained


def _is_local(ref: str) -> bool:
    return os.path.isdir(ref)


def _missing_message(ref: str, subfolder: str, err: Exception | str) -> str:
    if _is_local(ref):
        return (
            f"could not load {subfolder}/ from the local model directory {ref}: {err}. It must be in the "
            f"diffusers layout (model_index.json, vae/, unet/, text_encoder/, tokenizer/, scheduler/) with "
            f"safetensors weights, e.g. made by `huggingface-cli download {SD15_INPAINTING} --local-dir DIR`."
        )
    why = (
        err
        if isinstance(err, str)
        else f"it is not in the local cache and the hub could not be reached ({type(err).__name__})"
    )
    return (
        f"could not load {subfolder}/ of '{ref}': {why} (cache: {os.environ.get('HF_HOME', '~/.cache/huggingface')}). "
        f"On a machine with internet run `huggingface-cli download {ref}` (and copy its HF_HOME cache here), "
        f"or download it to a directory and set model.pretrained to that directory; "
        f"for a run without any weights set model.source: tiny."
    )


def hub_unreachable(ref: str, revision: str | None = None) -> str | None:
    """Why the Hugging Face model `ref` cannot be loaded now, or None when it can be tried: a local
    directory, a snapshot in the local cache, or a hub that answers.

    The hub clients retry a failed connection with back-off, which offline takes minutes per model
    (measured here: 2.5 min for PickScore's processor). One short probe first makes a missing model
    an immediate, clear "unavailable". (Something huggingface_hub could offer; it does not.)"""
    if os.path.isdir(ref):
        return None
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot_download(ref, revision=revision, local_files_only=True)
        return None
    except Exception:  # LocalEntryNotFoundError and kin: not cached
        pass
    if constants.HF_HUB_OFFLINE:
        return "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    reason = _probe_hub(constants.ENDPOINT)
    return None if reason is None else f"it is not in the local Hugging Face cache and {reason}"


@lru_cache(maxsize=4)
def _probe_hub(endpoint: str) -> str | None:
    """One HEAD request with a short timeout (standard library: honours the *_proxy variables)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=5.0).close()
        return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as e:  # URLError (an OSError), timeouts
        return f"the hub ({endpoint}) cannot be reached: {type(e).__name__}: {getattr(e, 'reason', e)}"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or os.sep != "/" and os.sep in ref


def _from_pretrained(cls, cfg: ModelConfig, subfolder: str, **kwargs):
    if _looks_like_path(cfg.pretrained) and not _is_local(cfg.pretrained):
        raise ModelLoadError(
            f"model.pretrained = {cfg.pretrained} is not a directory. Give a Hugging Face id "
            f"(e.g. {SD15_INPAINTING}) or a local directory in the diffusers layout."
        )
    reason = hub_unreachable(cfg.pretrained, cfg.revision)
    if reason:
        raise ModelLoadError(_missing_message(cfg.pretrained, subfolder, reason))
    try:
        return cls.from_pretrained(cfg.pretrained, subfolder=subfolder, revision=cfg.revision, **kwargs)
    except (OSError, ValueError) as e:  # hub/cache errors subclass OSError/ValueError
        raise ModelLoadError(_missing_message(cfg.pretrained, subfolder, e)) from e


def _pretrained_components(cfg: ModelConfig, parts, torch_dtype) -> Components:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    # Weights load from safetensors only (never pickles); `variant` picks e.g. the fp16 files.
    weights = dict(use_safetensors=True, variant=cfg.variant)
    dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    comps = Components(name=cfg.pretrained)
    if "vae" in parts:
        comps.vae = _from_pretrained(AutoencoderKL, cfg, "vae", **weights, **dtype)
    if "unet" in parts:
        comps.unet = _from_pretrained(UNet2DConditionModel, cfg, "unet", **weights, **dtype)
        if comps.unet.config.in_channels != 9:
            raise ModelLoadError(
                f"{cfg.pretrained}: its UNet takes {comps.unet.config.in_channels} input channels; facepaint needs "
                f"an inpainting UNet (9 channels: noisy latent, mask, masked-image latent), e.g. {SD15_INPAINTING}"
            )
    if "text_encoder" in parts:
        comps.text_encoder = _from_pretrained(CLIPTextModel, cfg, "text_encoder", **weights, **dtype)
    if "tokenizer" in parts:
        comps.tokenizer = _from_pretrained(CLIPTokenizer, cfg, "tokenizer")
    if "scheduler" in parts:
        comps.scheduler = _from_pretrained(DDPMScheduler, cfg, "scheduler")
    for m in (comps.vae, comps.unet, comps.text_encoder):
        if m is not None:
            m.eval()
    return comps


def load_components(cfg: ModelConfig, parts=PARTS, torch_dtype: torch.dtype | None = None) -> Components:
    """Load the named parts of the model `cfg` describes (see the module docstring)."""
    parts = tuple(parts)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown model part(s) {sorted(unknown)}; choose from {PARTS}")
    if cfg.source == "pretrained":
        return _pretrained_components(cfg, parts, torch_dtype)
    build = tiny_components if cfg.source == "tiny" else sd15_random_components
    comps = build(cfg.seed, parts)
    if torch_dtype is not None:
        for m in (comps.vae, comps.unet, comps.text_encoder):
            if m is not None and m.dtype != torch_dtype:  # (a no-op cast makes diffusers warn)
                m.to(dtype=torch_dtype)
    return comps


def save_pipeline(comps: Components, path: str | os.PathLike) -> Path:
    """Save components as a diffusers pipeline directory (the layout `pretrained` loads)."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=comps.unet,
        # The hub's SD1.5 inpainting repo ships a PNDM config; training reads it as DDPM.
        scheduler=PNDMScheduler.from_config({**SD15_SCHEDULE, "skip_prk_steps": True}),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


# ---------------------------------------------------------------------------------- safety checker
# SD1.5's directory ships diffusers' StableDiffusionSafetyChecker in safety_checker/ (CLIP ViT-L/14's vision
# tower, a projection, 17 + 3 concept embeddings and their thresholds) and its CLIPImageProcessor in
# feature_extractor/. facepaint.editing.safety runs it on every edit; here it is only loaded (or built tiny).

# The vision tower of the hub's safety_checker/config.json (CLIP ViT-L/14 at 224 px); the text tower is not built.
SD15_SAFETY_VISION = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="quick_gelu",
    projection_dim=768,
)
TINY_SAFETY_VISION = dict(
    SD15_SAFETY_VISION,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
    projection_dim=32,
)
SAFETY_OFF_HINT = "turn the check off with safety_checker=False (FaceEditor.from_artifact) or --no-safety-checker"


def random_safety_checker(seed: int = 0, *, full_size: bool = False, threshold: float | None = None):
    """(diffusers' StableDiffusionSafetyChecker, its CLIPImageProcessor) with random weights: `TINY_SAFETY_VISION`
    at 32 px (`full_size`: SD1.5's own checker, CLIP ViT-L/14 at 224 px, for measuring its cost). The concept
    embeddings are random too; `threshold` (None: diffusers' initial 1.0, which no cosine similarity exceeds, so
    nothing is flagged) sets every concept's threshold: below -1 every image is flagged."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    vision = SD15_SAFETY_VISION if full_size else TINY_SAFETY_VISION
    d, side = vision["projection_dim"], vision["image_size"]
    text = dict(hidden_size=d, intermediate_size=2 * d, num_hidden_layers=1, num_attention_heads=4, projection_dim=d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 4)
        checker = StableDiffusionSafetyChecker(CLIPConfig(text_config=text, vision_config=vision, projection_dim=d))
        with torch.no_grad():
            checker.concept_embeds.normal_()
            checker.special_care_embeds.normal_()
            if threshold is not None:
                checker.concept_embeds_weights.fill_(threshold)
                checker.special_care_embeds_weights.fill_(threshold)
    # SD1.5's feature_extractor/preprocessor_config.json at `side` px: CLIP's resize, centre crop and normalisation
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return checker.eval(), processor


def save_safety_checker(checker, processor, path: str | os.PathLike) -> Path:
    """Add a safety checker and its image processor to the diffusers directory `path` (safety_checker/,
    feature_extractor/, safetensors) and name them in its model_index.json, as SD1.5's directory has them."""
    import json

    path = Path(path)
    checker.save_pretrained(path / "safety_checker", safe_serialization=True)
    processor.save_pretrained(path / "feature_extractor")
    index = path / "model_index.json"
    if index.is_file():
        info = json.loads(index.read_text())
        info.update(
            safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
            feature_extractor=["transformers", "CLIPImageProcessor"],
            requires_safety_checker=True,
        )
        index.write_text(json.dumps(info, indent=2))
    return path


def ships_safety_checker(cfg: ModelConfig) -> bool:
    """Whether the base model `cfg` ships a safety checker: a local directory has safety_checker/; a hub id's
    model_index.json names one (the hub's SD1.5 inpainting does); tiny and random models have none."""
    if cfg.source != "pretrained":
        return False
    if _is_local(cfg.pretrained):
        return os.path.isdir(os.path.join(cfg.pretrained, "safety_checker"))
    import json

    from huggingface_hub import hf_hub_download

    reason = hub_unreachable(cfg.pretrained, cfg.revision)
    if reason:
        raise ModelLoadError(_missing_message(cfg.pretrained, "model_index.json", reason))
    try:
        index_file = hf_hub_download(cfg.pretrained, "model_index.json", revision=cfg.revision)
        index = json.loads(Path(index_file).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(_missing_message(cfg.pretrained, "model_index.json", e)) from e
    return (index.get("safety_checker") or [None, None])[-1] is not None


def load_safety_checker(cfg: ModelConfig, torch_dtype: torch.dtype | None = None):
    """(StableDiffusionSafetyChecker in eval mode, CLIPImageProcessor) of the base model `cfg`, or None when it
    ships none (`ships_safety_checker`). Weights from safetensors only (no pickle, no .bin fallback), `variant`
    as for the other parts. ModelLoadError when it ships a checker that cannot be loaded (the message says how
    to turn the check off)."""
    if not ships_safety_checker(cfg):
        return None
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    try:
        if _is_local(cfg.pretrained) and not os.path.isdir(os.path.join(cfg.pretrained, "feature_extractor")):
            raise ModelLoadError(
                f"{cfg.pretrained} has safety_checker/ but no feature_extractor/ (its CLIPImageProcessor), which "
                f"the checker needs"
            )
        checker = _from_pretrained(
            StableDiffusionSafetyChecker, cfg, "safety_checker", use_safetensors=True, variant=cfg.variant, **dtype
        )
        processor = _from_pretrained(CLIPImageProcessor, cfg, "feature_extractor")
    except ModelLoadError as e:
        raise ModelLoadError(f"the base model's safety checker: {e} Or {SAFETY_OFF_HINT}.") from e
    return checker.eval(), processor


# ------------------------------------------------------------------------ SD1.5 text-to-image base
# The 4-channel SD1.5 that BrushNet (facepaint.evaluation.methods.brushnet) and Blended Latent Diffusion were published
# on: same VAE, text encoder and tokenizer as the inpainting model, a UNet taking only the noisy latent.

SD15_T2I = "stable-diffusion-v1-5/stable-diffusion-v1-5"
TINY_UNET_T2I = dict(TINY_UNET, in_channels=4)
# What a diffusers SD1.5 text-to-image directory must hold for `load_t2i_components` (safetensors only;
# with a variant, e.g. fp16, the weight files are named diffusion_pytorch_model.fp16.safetensors etc.).
T2I_FILES = (
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
)
# and the tokenizer's vocabulary: the hub ships vocab.json + merges.txt, transformers >= 5 saves tokenizer.json
T2I_VOCABULARY = (("tokenizer/vocab.json", "tokenizer/merges.txt"), ("tokenizer/tokenizer.json",))


def t2i_files(variant: str | None = None) -> tuple[str, ...]:
    """T2I_FILES with the weight files named for `variant` (None: the full-precision files)."""
    if not variant:
        return T2I_FILES
    return tuple(f.replace(".safetensors", f".{variant}.safetensors") for f in T2I_FILES)


def missing_t2i_files(ref: str, variant: str | None = None) -> list[str]:
    """The files of `t2i_files` and `T2I_VOCABULARY` that the local directory `ref` lacks ([] for a hub id:
    only the hub can tell)."""
    if not _is_local(ref):
        return []
    missing = [f for f in t2i_files(variant) if not os.path.isfile(os.path.join(ref, f))]
    if not any(all(os.path.isfile(os.path.join(ref, f)) for f in group) for group in T2I_VOCABULARY):
        missing.append(" + ".join(T2I_VOCABULARY[0]) + " (or " + " + ".join(T2I_VOCABULARY[1]) + ")")
    return missing


def _t2i_message(ref: str, what: str, model: str = SD15_T2I) -> str:
    return (
        f"could not load the text-to-image model '{ref}': {what}. It must be a Hugging Face id or a "
        f"diffusers directory in the hub's layout (unet/, vae/, text_encoder/ with safetensors weights, "
        f"tokenizer/, scheduler/); on a machine with internet run "
        f"`huggingface-cli download {model} --local-dir DIR` and pass DIR (or download it without "
        f"--local-dir, copy that machine's HF_HOME cache here and pass the id)."
    )


def load_t2i_components(
    ref: str,
    torch_dtype: torch.dtype | None = None,
    *,
    revision: str | None = None,
    variant: str | None = None,
    model: str = SD15_T2I,
) -> Components:
    """The five parts of an SD1.5 (or SD2.1) text-to-image model (a hub id or a local diffusers directory), in eval
    mode. `model`: the hub id that the error messages tell to download.

    The same safetensors-only loading as `load_components`, with the 4-channel check instead of the
    9-channel one. Offline, a hub id that is not cached fails in about a second (`hub_unreachable`)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if _looks_like_path(ref) and not _is_local(ref):
        raise ModelLoadError(_t2i_message(ref, "it is not a directory", model))
    missing = missing_t2i_files(ref, variant)
    if missing:
        raise ModelLoadError(_t2i_message(ref, f"the directory lacks {', '.join(missing)}", model))
    reason = hub_unreachable(ref, revision)
    if reason:
        raise ModelLoadError(_t2i_message(ref, reason, model))

    def load(cls, subfolder, **kwargs):
        try:
            return cls.from_pretrained(ref, subfolder=subfolder, revision=revision, **kwargs)
        except (OSError, ValueError) as e:  # hub/cache errors subclass OSError/ValueError
            raise ModelLoadError(_t2i_message(ref, f"{subfolder}/: {type(e).__name__}: {str(e)[:300]}", model)) from e

    weights = dict(use_safetensors=True, variant=variant)
    dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    comps = Components(
        vae=load(AutoencoderKL, "vae", **weights, **dtype),
        unet=load(UNet2DConditionModel, "unet", **weights, **dtype),
        text_encoder=load(CLIPTextModel, "text_encoder", **weights, **dtype),
        tokenizer=load(CLIPTokenizer, "tokenizer"),
        scheduler=load(DDPMScheduler, "scheduler"),
        name=ref,
    )
    if comps.unet.config.in_channels != 4:
        raise ModelLoadError(
            f"{ref}: its UNet takes {comps.unet.config.in_channels} input channels; a text-to-image base needs 4 "
            f"(the noisy latent only), e.g. {SD15_T2I} (an inpainting model such as {SD15_INPAINTING} has 9)"
        )
    for m in (comps.vae, comps.unet, comps.text_encoder):
        m.eval()
    return comps


def save_tiny_t2i(path: str | os.PathLike, seed: int = 0, full_size: bool = False) -> Path:
    """A diffusers StableDiffusionPipeline directory (the hub's SD1.5 layout, safetensors) with tiny random
    models: `TINY_UNET_T2I`, `TINY_VAE`, `TINY_TEXT` (`full_size`: SD1.5's own architecture, 4 GB in fp32,
    for the paper-size tests), and SD1.5's real tokenizer built offline (`clip_tokenizer`). Tests load it
    through exactly the code a hub id takes."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    configs = (
        (dict(SD15_UNET, in_channels=4), SD15_VAE, SD15_TEXT) if full_size else (TINY_UNET_T2I, TINY_VAE, TINY_TEXT)
    )
    comps = _random_components(*configs, seed, PARTS, f"{'' if full_size else 'tiny-'}t2i-random(seed={seed})")
    pipe = StableDiffusionPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=comps.unet,
        # the hub's SD1.5 repo ships a PNDM config, as the inpainting one does
        scheduler=PNDMScheduler.from_config({**SD15_SCHEDULE, "skip_prk_steps": True}),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)
