"""The SD1.5 inpainting methods: ours, ours_no_blend, sd15_inpaint and both Blended Latent Diffusion rows.

They are one class, `Inpaint`: a `facepaint.method.generate.Inpainter` (the generation of `facepaint edit`, so
the prompt and the negative prompt go through `adapter.condition` exactly as there) with or without
`facepaint.method.blend.pixel_blend`, sampled as the evaluation's `SamplingOptions` say (blended with their
sigma). What tells them apart is the Inpainter each gets (facepaint.evaluation.methods.registry): ours the
artifact's k/v and adapter and the training's latent mask (`generate.face_inpaint_pipeline`); sd15_inpaint
the base model with diffusers' own pipeline, as its public code runs; Blended Latent Diffusion a 4-channel
text-to-image UNet or the latent replacement of facepaint.evaluation.methods.blended_latent.
"""

from __future__ import annotations

import numpy as np

from facepaint.evaluation.methods.base import LABELS, EditInput, Method, check_input
from facepaint.method.blend import pixel_blend
from facepaint.method.generate import Inpainter
from facepaint.method.options import SamplingOptions


class Inpaint(Method):
    """An Inpainter's generation on the square photo, pixel-blended with M_soft when `blend`: the same
    `generate` and `pixel_blend` that `facepaint edit` runs on its crop."""

    def __init__(self, name: str, inpainter: Inpainter, options: SamplingOptions, blend: bool):
        self.name, self.label, self.inpainter, self.options, self.blend = name, LABELS[name], inpainter, options, blend

    def edit(self, x: EditInput) -> np.ndarray:
        check_input(x, self.inpainter.resolution)
        generated, _ = self.inpainter.generate([x.image], [x.mask], [x.beta], x.prompt, self.options, seeds=x.seed)
        return pixel_blend(x.image, generated[0], x.soft) if self.blend else generated[0]

    def modules(self):
        return self.inpainter.modules()
