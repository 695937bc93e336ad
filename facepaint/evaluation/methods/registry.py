"""The evaluation's methods by name (SPEC sections 4-6), built for one trained artifact: `build_methods`.

    ours                          the artifact's base model + k/v + adapter, decoded, pixel-blended with M_soft
    ours_no_blend                 the same generation (same seed), the decoded image as it is (the blending ablation)
    sd15_inpaint                  the base model, no artifact, plain CLIP embeddings, decoded (diffusers' pipeline)
    blended_latent_diffusion      Blended Latent Diffusion as its public code runs it (`blended_latent`): a 4-channel
                                  text-to-image model (SD2.1-base, its code's default: `evaluate.blended_latent`),
                                  the first 25% of the DDIM steps skipped, the latents outside the mask replaced by
                                  the photo's, freshly noised, after every step, decoded
    blended_latent_diffusion_9ch  an extra row of ours (no public-code counterpart): a latent replacement inside
                                  diffusers' inpainting pipeline on the 9-channel model that ours starts from
    brushnet                      BrushNet as its public script runs it (`brushnet`): its base (Realistic Vision
                                  V6.0 B1, an SD1.5 fine-tune), UniPC, 50 steps; decoded as it is
    diptych_prompting             Diptych Prompting on FLUX.1-dev + an inpainting ControlNet (`diptych`)
                                  in its own precision (evaluate.diptych.dtype: its code's bf16)
    paint_by_example              diffusers' PaintByExamplePipeline, conditioned on an exemplar face instead of text
    blended_diffusion             Blended Diffusion in pixel space as its public code runs it (`blended_diffusion`):
                                  guided-diffusion's unconditional 256 px UNet guided by CLIP ViT-B/16, the noised
                                  photo blended in outside the mask at every step (not in the paper's comparison)
    msagan                        the gan stage's MSaGAN generator: no text, its one attribute, on the pairs whose
                                  prompt asks for it (`msagan_edit`; not in the paper's comparison)

One module per method beside this one (`inpaint` holds the four SD1.5 inpainting rows). Where each baseline's
weights come from is params.yaml `evaluate.baselines` (`Baselines`): the paper profile names the public
checkpoints; the demo names tiny random models of the same architectures that the demo stage saves in the
same layouts, so the demo runs every method through the real loading code. A method whose weights cannot be
loaded is unavailable, with the files to supply; it never gets a number.

The base model is loaded once; "ours" loads the artifact's k/v into its UNet in place, so when a base method
is built beside it the base methods get a deep copy of the UNet (one more UNet in memory: 1.7 GB in fp16 for
SD1.5, 3.4 GB in fp32). VAE and text encoder are shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import partial

from facepaint.common.checks import check_fields, settings
from facepaint.evaluation.methods.base import LABELS, Method, MethodUnavailable
from facepaint.evaluation.methods.blended_diffusion import BlendedDiffusionSettings, load_blended_diffusion
from facepaint.evaluation.methods.blended_latent import (
    SD21_BASE,
    BlendedLatent,
    BlendedLatentSettings,
    blended_latent_pipeline,
)
from facepaint.evaluation.methods.brushnet import BrushNetSettings, load_brushnet
from facepaint.evaluation.methods.diptych import DiptychSettings, load_diptych
from facepaint.evaluation.methods.inpaint import Inpaint
from facepaint.evaluation.methods.msagan_edit import load_msagan
from facepaint.evaluation.methods.paint_by_example import PaintByExample
from facepaint.method.artifact import apply_artifact, load_artifact
from facepaint.method.generate import Inpainter
from facepaint.method.models import (
    SD15_T2I,
    ModelConfig,
    ModelLoadError,
    load_components,
    load_t2i_components,
    pick_device,
    pick_dtype,
)
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import Speed

METHODS = tuple(LABELS)
BLD_MODELS = {"sd21_base": SD21_BASE, "sd15_t2i": SD15_T2I}  # the hub ids of BLD's bases, for the messages


@dataclass
class Baselines:  # params.yaml `evaluate.baselines`: each a Hugging Face id or a local directory
    sd15_t2i: str  # SD1.5 text-to-image (4-channel UNet): BrushNet's and BLD's [ours] base (their settings' base)
    sd21_base: str  # SD2.1-base text-to-image: Blended Latent Diffusion's public code's default model
    brushnet: str  # TencentARC's SD1.5 BrushNet, segmentation-mask checkpoint (config.json + safetensors)
    brushnet_base: str  # BrushNet's public script's base: Realistic Vision V6.0 B1 (an SD1.5 fine-tune)
    flux: str  # FLUX.1-dev (diffusers layout): Diptych Prompting's base
    flux_controlnet: str  # alimama's FLUX.1-dev inpainting ControlNet (Beta)
    paint_by_example: str  # Paint-by-Example's pipeline
    guided_diffusion: str  # guided-diffusion's 256x256_diffusion_uncond.pt (a file): Blended Diffusion's UNet
    clip_vit_b16: str  # Blended Diffusion's OpenAI CLIP ViT-B/16: an open_clip local-dir folder or an hf-hub: id
    msagan: str  # the gan stage's model folder (data/gan/model)

    def __post_init__(self):
        check_fields(self, "evaluate.baselines")


def _unavailable(name: str, e: Exception) -> str:
    return f"{LABELS[name]}'s weights could not be loaded: {e}"


def build_methods(
    names: list[str],
    artifact_path,
    options: SamplingOptions,
    *,
    base_model: ModelConfig | None = None,
    device="auto",
    dtype: str,
    baselines: Baselines,
    brushnet: BrushNetSettings,
    diptych: DiptychSettings,
    blended_latent: BlendedLatentSettings,
    blended_diffusion: BlendedDiffusionSettings | dict | None = None,
) -> tuple[dict[str, Method], dict[str, str]]:
    """(the methods that could be built, in the order of `names`; {name: reason} for the unavailable ones).

    `base_model`: None for the artifact's own (its conditions); all methods run at the artifact's
    resolution. A base model that cannot be loaded raises (`models.ModelLoadError`): ours cannot run
    without it. `baselines`: where the other baselines' weights are; one that cannot be loaded makes its
    method unavailable, with the reason; `brushnet`, `diptych` and `blended_latent` are those baselines' own
    settings."""
    unknown = sorted(set(names) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(LABELS)}")
    if not isinstance(options, SamplingOptions):
        raise TypeError(f"options must be a SamplingOptions, got {type(options).__name__}")
    baselines = settings(Baselines, baselines, "evaluate.baselines")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    artifact = load_artifact(artifact_path)
    trained = artifact.conditions
    built, unavailable = {}, {}
    inpainter = partial(
        Inpainter,
        resolution=trained.resolution,
        device=dev,
        speed_options=Speed(dtype=dtype),
    )

    # The 9-channel inpainting model: ours and the baselines that start from the same model
    ours = [n for n in ("ours", "ours_no_blend") if n in names]
    plain = [n for n in ("sd15_inpaint", "blended_latent_diffusion_9ch") if n in names]
    if ours or plain:
        comps = load_components(base_model or trained.model, torch_dtype=torch_dtype)
        base = replace(comps, unet=copy.deepcopy(comps.unet)) if ours and plain else comps
        if ours:
            ip = inpainter(comps, apply_artifact(comps, artifact), trained.adapter_scale)
            built.update({n: Inpaint(n, ip, options, blend=n == "ours") for n in ours})
        if "sd15_inpaint" in names:  # diffusers' own pipeline: the baseline's public behaviour
            from diffusers import StableDiffusionInpaintPipeline

            plain_ip = inpainter(base, None, 0.0, pipeline_class=StableDiffusionInpaintPipeline)
            built["sd15_inpaint"] = Inpaint("sd15_inpaint", plain_ip, options, blend=False)
        if "blended_latent_diffusion_9ch" in names:
            ip = inpainter(base, None, 0.0, pipeline_class=blended_latent_pipeline())
            built["blended_latent_diffusion_9ch"] = Inpaint("blended_latent_diffusion_9ch", ip, options, blend=False)

    # Blended Latent Diffusion as its public code runs it, on its base's 4-channel text-to-image model
    if "blended_latent_diffusion" in names:
        bld = settings(BlendedLatentSettings, blended_latent, "evaluate.blended_latent")
        try:
            t2i = load_t2i_components(getattr(baselines, bld.base), torch_dtype, model=BLD_MODELS[bld.base])
        except ModelLoadError as e:
            unavailable["blended_latent_diffusion"] = _unavailable("blended_latent_diffusion", e)
        else:
            built["blended_latent_diffusion"] = BlendedLatent(t2i, bld, trained.resolution, device=dev)
    # BrushNet on its base (evaluate.brushnet.base), Diptych Prompting on FLUX.1-dev
    if "brushnet" in names:
        b = settings(BrushNetSettings, brushnet, "evaluate.brushnet")
        try:
            built["brushnet"] = load_brushnet(
                getattr(baselines, b.base),
                baselines.brushnet,
                b.options(options),
                trained.resolution,
                dev,
                torch_dtype,
                blur_blend=b.blur_blend,
                conditioning_scale=b.conditioning_scale,
                scheduler=b.scheduler,
            )
        except MethodUnavailable as e:
            unavailable["brushnet"] = str(e)
    if "diptych_prompting" in names:
        d = settings(DiptychSettings, diptych, "evaluate.diptych")
        try:
            built["diptych_prompting"] = load_diptych(
                baselines.flux, baselines.flux_controlnet, d, device=dev, torch_dtype=d.torch_dtype(dev)
            )
        except MethodUnavailable as e:
            unavailable["diptych_prompting"] = str(e)
    if "paint_by_example" in names:
        try:
            built["paint_by_example"] = PaintByExample(baselines.paint_by_example, options, dev, torch_dtype)
        except MethodUnavailable as e:
            unavailable["paint_by_example"] = str(e)
    if "blended_diffusion" in names:
        if blended_diffusion is None:
            raise ValueError("blended_diffusion: its settings (params.yaml evaluate.blended_diffusion) are needed")
        bd = settings(BlendedDiffusionSettings, blended_diffusion, "evaluate.blended_diffusion")
        try:  # in the evaluation's precision on a GPU (its code: the UNet in fp16, CLIP as clip.load gives it)
            built["blended_diffusion"] = load_blended_diffusion(
                baselines.guided_diffusion, baselines.clip_vit_b16, bd, trained.resolution, dev, torch_dtype
            )
        except MethodUnavailable as e:
            unavailable["blended_diffusion"] = str(e)
    if "msagan" in names:
        try:
            built["msagan"] = load_msagan(baselines.msagan, trained.resolution, dev)
        except MethodUnavailable as e:
            unavailable["msagan"] = str(e)
    return {n: built[n] for n in names if n in built}, unavailable


# ---------------------------------------------------------------------------------------- measuring
