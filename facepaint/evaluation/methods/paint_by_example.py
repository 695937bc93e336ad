"""Paint-by-Example (not in the paper's comparison): diffusers' PaintByExamplePipeline, conditioned on an
exemplar face instead of text."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from facepaint.evaluation.methods.base import LABELS, EditInput, Method, MethodUnavailable, check_input
from facepaint.method.generate import make_scheduler
from facepaint.method.models import hub_unreachable
from facepaint.method.options import SamplingOptions


class PaintByExample(Method):
    """diffusers' PaintByExamplePipeline (its own SD1.4-based weights), decoded as it is.

    The exemplar is a face from another photo, which the caller supplies in `EditInput.exemplar`
    (Paint-by-Example takes no text; the input's own face would make the edit a reconstruction); the
    evaluate stage passes the face of the next pair's photo. `strength` and the negative prompt do
    not apply."""

    name, label = "paint_by_example", LABELS["paint_by_example"]

    def __init__(self, ref: str, options: SamplingOptions, device: torch.device, torch_dtype: torch.dtype):
        from diffusers import PaintByExamplePipeline

        try:
            reason = hub_unreachable(ref)  # fails in a second instead of minutes of retries
            if reason:
                raise OSError(reason)
            pipe = PaintByExamplePipeline.from_pretrained(  # safetensors only: never a pickled .bin
                ref, torch_dtype=torch_dtype, safety_checker=None, use_safetensors=True
            )
        except Exception as e:  # hub, cache and file errors come in many types; each means "not here"
            raise MethodUnavailable(
                f"Paint-by-Example weights '{ref}' could not be loaded ({type(e).__name__}: {str(e)[:200]}). On a "
                f"machine with internet run `huggingface-cli download {ref}` (and copy its HF_HOME "
                f"cache here), or download it with --local-dir DIR and pass that directory as paint_by_example."
            ) from e
        pipe.scheduler = make_scheduler(options.scheduler, pipe.scheduler.config)
        self.pipe, self.options, self.device = pipe.to(device), options, device
        self.pipe.set_progress_bar_config(disable=True)

    def edit(self, x: EditInput) -> np.ndarray:
        if x.exemplar is None:
            raise ValueError(
                "Paint-by-Example needs an exemplar face (EditInput.exemplar, a face from another "
                "photo); none was given"
            )
        r = x.image.shape[0]
        check_input(x, r)
        out = self.pipe(
            example_image=Image.fromarray(x.exemplar),
            image=Image.fromarray(x.image),
            mask_image=Image.fromarray(x.mask.astype(np.uint8) * 255),
            height=r,
            width=r,
            num_inference_steps=self.options.steps,
            guidance_scale=self.options.guidance_scale,
            generator=torch.Generator(self.device).manual_seed(x.seed),
            output_type="np",
        ).images[0]
        return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)

    def modules(self):
        return [self.pipe.vae, self.pipe.unet, self.pipe.image_encoder]
