"""Generation (SPEC section 4, before the blend): SD1.5 inpainting of face crops at the model's
resolution, the text conditioned by the face-aware adapter.

`Inpainter` is the one object that owns a diffusers pipeline: its components, the adapter and its
scale and the speed options (`speed.Speed`). Its `generate` runs N crops in ONE pipeline call, sampled
as a `SamplingOptions` says (facepaint.method.options: steps, guidance, scheduler, strength, negative
prompt), and returns the decoded images, not blended (facepaint.method.blend does that). The editor
(facepaint.editing) calls it on aligned face crops, the evaluation's methods on their square photos.

Why it is built this way:
- The prompt and the (empty by default) negative prompt are both conditioned by `adapter.condition`
  with each crop's face ratio beta, exactly as in training (the SPEC applies the adapter identically
  in training and inference; conditioning the negative prompt too is our reading, since classifier-free
  guidance contrasts the two). The pipeline receives the embeddings.
- Crop i's noise comes from its own torch.Generator seeded with seeds[i], so a crop's result does not
  depend on the other crops of its batch (up to float rounding: batching changes the summation order
  inside the batched convolutions and matrix products).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from PIL import Image

from facepaint.method import speed
from facepaint.method.adapter import FaceAdapter, condition
from facepaint.method.masks import latent_mask
from facepaint.method.models import Components, pick_device, pick_dtype
from facepaint.method.options import SCHEDULERS, SamplingOptions

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def make_scheduler(name: str, config):
    """The sampling scheduler `name` (ddim | dpm) from a base model's scheduler config.

    SD's latents span about +-4: clipping the predicted x0 to [-1, 1] (DDPM's default when a config
    lacks the key) would wreck them, so clip_sample is always off."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")
    cls = DDIMScheduler if name == "ddim" else DPMSolverMultistepScheduler
    return cls.from_config({**config, "clip_sample": False})


def encode_prompts(text_encoder, tokenizer, prompts) -> tuple[torch.Tensor, list[str]]:
    """CLIP embeddings E (N, 77, d) of N prompts, in one tokenizer call and one text-encoder call, and for
    each prompt the text cut off beyond the 77-token window ('' if none). A prompt repeated in the list
    is encoded once (a prompt broadcast to a batch costs one text-encoder row, and its embedding is the
    same whatever else is in the batch)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("encode_prompts needs at least one prompt")
    unique = list(dict.fromkeys(prompts))
    n = tokenizer.model_max_length
    ids = tokenizer(unique, padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids
    words = tokenizer(unique, add_special_tokens=False, truncation=False, verbose=False).input_ids
    cut = {p: tokenizer.decode(w[n - 2 :]) if len(w) > n - 2 else "" for p, w in zip(unique, words)}
    embeddings = text_encoder(ids.to(text_encoder.device))[0]
    if len(unique) < len(prompts):
        embeddings = embeddings[torch.tensor([unique.index(p) for p in prompts], device=embeddings.device)]
    return embeddings, [cut[p] for p in prompts]


@functools.cache  # one class, defined on first use: importing diffusers' pipelines takes seconds
def face_inpaint_pipeline():
    """diffusers' StableDiffusionInpaintPipeline with the UNet's mask channel built as training builds it:
    M_latent = `facepaint.method.masks.latent_mask(M, vae_scale_factor)` (M averaged over each latent cell,
    binarized at 0.5), the very function the masks stage uses for the training masks. diffusers itself
    downsamples the mask by nearest neighbour, which disagrees with the pooled mask on the face's border
    cells (measured on fixture faces at 512 px: see tests/test_generate.py)."""
    from diffusers import StableDiffusionInpaintPipeline

    class FaceInpaintPipeline(StableDiffusionInpaintPipeline):
        def prepare_mask_latents(self, mask, masked_image, batch_size, height, width, *args, **kwargs):
            # mask: (B, 1, H, W) in {0, 1}, binarized by the pipeline's mask processor
            f = self.vae_scale_factor
            pooled = np.stack([latent_mask(m[0].cpu().numpy() >= 0.5, f) for m in mask])[:, None]
            pooled = torch.from_numpy(pooled).to(mask.device, mask.dtype)
            # already at the latent size, the pipeline's own resize leaves it as it is
            return super().prepare_mask_latents(pooled, masked_image, batch_size, height, width, *args, **kwargs)

    return FaceInpaintPipeline


def per_image(value, n: int, what: str, kind) -> list:
    """`value` as a list of n: one `kind` (str, int) broadcast to all, or a sequence of exactly n."""
    if isinstance(value, kind):
        return [value] * n
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{what} must be one value for all images or a list of {n}, got {type(value).__name__}")
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{what}: expected one for all images or one per image ({n}), got {len(values)}")
    return values


class Inpainter:
    """SD1.5 inpainting with the face-aware adapter, on crops at `resolution` (see the module docstring).

    `adapter` None (and any `adapter_scale`) is the base model, unconditioned: the baselines.
    The scheduler is chosen per call (`SamplingOptions.scheduler`), each built once from the base model's
    scheduler config.
    `pipeline_class`: the StableDiffusionInpaintPipeline (sub)class to sample with; default
    `face_inpaint_pipeline()`, whose mask channel is the training's M_latent. The baselines pass
    diffusers' own class (their public behaviour) or the evaluation's Blended Latent Diffusion.
    The speed options change the given components in place (the pipeline runs their modules; a compiled
    UNet is the pipeline's own wrapper, `components.unet` stays eager) and are recorded in `runtime`."""

    def __init__(
        self,
        components: Components,
        adapter: FaceAdapter | None,
        adapter_scale: float,
        resolution: int,
        *,
        device="auto",
        speed_options: speed.Speed = speed.Speed(),
        pipeline_class=None,
    ):
        if resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (the VAE's factor), got {resolution}")
        self.device = pick_device(device)
        torch_dtype = pick_dtype(speed_options.dtype, self.device)
        channels_last = (
            self.device.type == "cuda" if speed_options.channels_last is None else speed_options.channels_last
        )
        self.adapter = None if adapter is None else adapter.to(self.device).eval()
        self.adapter_scale, self.resolution = adapter_scale, resolution
        self.name = components.name
        self._scheduler_config = components.scheduler.config
        self._schedulers = {"ddim": make_scheduler("ddim", self._scheduler_config)}
        self.pipe = (pipeline_class or face_inpaint_pipeline())(
            vae=components.vae,
            text_encoder=components.text_encoder,
            tokenizer=components.tokenizer,
            unet=components.unet,
            scheduler=self._schedulers["ddim"],
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        pipe = self.pipe
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            if module.dtype != torch_dtype:
                module.to(torch_dtype)
        for module in (pipe.unet, pipe.vae):
            speed.set_attention(module, speed_options.attention)
            if channels_last:
                speed.to_channels_last(module)
            else:  # NCHW, also for components an earlier inpainter made channels_last
                module.to(memory_format=torch.contiguous_format)
        self.runtime = {
            "device": str(self.device),
            "dtype": DTYPE_NAMES.get(pipe.unet.dtype, str(pipe.unet.dtype)),
            "attention": speed_options.attention,
            "channels_last": channels_last,
            "compile": speed_options.compile,
        }
        # static shapes: a batch of 1 and a batch of 8 each get their own graph
        pipe.unet = speed.compiled(pipe.unet, speed_options.compile, dynamic=False)

    def use_scheduler(self, name: str) -> None:
        """Sample with the scheduler `name` (ddim | dpm) from now on."""
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self._scheduler_config)
        self.pipe.scheduler = self._schedulers[name]

    def modules(self) -> list[torch.nn.Module]:
        """The networks a generation runs (for the memory a method needs)."""
        pipe = self.pipe
        return [m for m in (pipe.vae, pipe.unet, pipe.text_encoder, self.adapter) if m is not None]

    @torch.inference_mode()
    def generate(
        self,
        images,
        masks,
        betas,
        prompts,
        options: SamplingOptions,
        *,
        seeds=0,
        negative_prompts=None,
        on_step=None,
    ) -> tuple[list[np.ndarray], list[str]]:
        """I_result for N square crops at the model's resolution (uint8 R x R x 3 each, bool R x R masks M,
        face ratios beta) in ONE pipeline call, sampled as `options` says. Returns (the N decoded inpaintings,
        not blended; each prompt's text cut at 77 tokens). `prompts`, `seeds`, `negative_prompts`: one per
        crop, or a single str / int for all (`negative_prompts` None: the options' negative prompt). One crop
        is passed to the pipeline as a single image with a single generator, which keeps single-image
        pipelines such as the Blended Latent Diffusion baseline working. `on_step(i)`: called after denoising
        step i (1, 2, ...), for a progress bar."""
        # 1. Check inputs
        n = len(images)
        if n == 0:
            raise ValueError("generate needs at least one image")
        if len(masks) != n or len(betas) != n:
            raise ValueError(f"generate: {n} images but {len(masks)} masks and {len(betas)} betas")
        prompts = per_image(prompts, n, "prompts", str)
        if negative_prompts is None:
            negative_prompts = options.negative_prompt
        negative_prompts = per_image(negative_prompts, n, "negative_prompts", str)
        seeds = [int(s) for s in per_image(seeds, n, "seeds", (int, np.integer))]
        r = self.resolution
        for i, (image, mask) in enumerate(zip(images, masks)):
            if np.shape(image) != (r, r, 3) or np.asarray(image).dtype != np.uint8 or np.shape(mask) != (r, r):
                raise ValueError(
                    f"crop {i}: expected a uint8 ({r}, {r}, 3) image and an ({r}, {r}) mask at the "
                    f"model's resolution, got {np.asarray(image).dtype} {np.shape(image)} and "
                    f"{np.shape(mask)}"
                )
        # 2. Encode and condition the prompts (E_hat = E + adapter_scale * beta * A(E)), both of them
        beta = [float(b) for b in betas]
        embeds, cuts = [], []
        for what, texts in (("prompt", prompts), ("negative prompt", negative_prompts)):
            e, cut = encode_prompts(self.pipe.text_encoder, self.pipe.tokenizer, texts)
            for text, c in dict(zip(texts, cut)).items():
                if c:
                    warnings.warn(
                        f"{what} {text[:40]!r}... is longer than CLIP's 77 tokens; this part was cut "
                        f"and has no effect: {c!r}",
                        stacklevel=4,
                    )
            embeds.append(condition(e, beta[0] if n == 1 else beta, self.adapter, self.adapter_scale))
            cuts.append(cut)
        # 3. Denoise and decode, one generator per crop
        pil_images = [Image.fromarray(np.asarray(image)) for image in images]
        pil_masks = [Image.fromarray(np.asarray(mask).astype(np.uint8) * 255) for mask in masks]
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        one = (lambda items: items[0]) if n == 1 else (lambda items: items)
        self.use_scheduler(options.scheduler)
        extra = {}
        if on_step is not None:

            def step_end(pipe, i, t, callback_kwargs):
                on_step(i + 1)
                return callback_kwargs

            extra["callback_on_step_end"] = step_end
        out = self.pipe(
            prompt_embeds=embeds[0],
            negative_prompt_embeds=embeds[1],
            image=one(pil_images),
            mask_image=one(pil_masks),
            height=r,
            width=r,
            num_inference_steps=options.steps,
            guidance_scale=options.guidance_scale,
            strength=options.strength,
            generator=one(generators),
            output_type="np",
            **extra,
        ).images
        return list(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)), cuts[0]
