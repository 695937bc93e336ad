"""MSaGAN in the evaluation: the gan stage's generator (data/gan/model) edits the one attribute it was trained for.

It takes no text. It edits the pairs whose evaluation prompt asks for its attribute (`msagan.asks_for`: "smiling"
for Smiling), towards the attribute present (target 1), and no other pair; the table says how many. [ours], for
the comparison: the test photo (at the evaluation's resolution R) is resized to the GAN's size (its
`image_size`, 128 in MSaGAN's experiments) as the gan stage resized its training photos, edited, resized back to R
and pixel-blended with M_soft like ours, so its background figures are those of the same crop and blend as the
other methods'.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facepaint.evaluation.methods.base import EditInput, Method, MethodUnavailable, check_input
from facepaint.evaluation.msagan import GanConfig, Generator, asks_for, to_tensor
from facepaint.method.blend import pixel_blend

GENERATOR = "generator.safetensors"
GAN_JSON = "gan.json"


class MSaGANEdit(Method):
    name = "msagan"
    label = "MSaGAN"

    def __init__(self, generator: Generator, cfg: GanConfig, resolution: int, device):
        self.G, self.cfg, self.resolution, self.device = generator, cfg, resolution, torch.device(device)
        self.note = (
            f"takes no text: its generator ({cfg.variant}, {cfg.mask_loss} mask loss, trained by the gan stage) "
            f"edits {cfg.attribute} towards present on the pairs whose prompt asks for it, at {cfg.image_size} px, "
            f"resized back to {resolution} px and pixel-blended with M_soft [ours]"
        )

    def modules(self):
        return [self.G]

    def applies(self, x: EditInput) -> bool:
        return asks_for(x.prompt, self.cfg.attribute)

    def scope(self) -> str:
        return f"no evaluation prompt asks for {self.cfg.attribute}, the one attribute it edits"

    @torch.no_grad()
    def edit(self, x: EditInput) -> np.ndarray:
        from PIL import Image

        from facepaint.common.images import resize_rgb

        check_input(x, self.resolution)
        small = to_tensor([resize_rgb(Image.fromarray(x.image), self.cfg.image_size)]).to(self.device)
        edited, _ = self.G(small, torch.ones(1, device=self.device))
        out = edited[0].permute(1, 2, 0).add(1).mul(127.5).round().clamp(0, 255).byte().cpu().numpy()
        back = resize_rgb(Image.fromarray(out), self.resolution)
        return pixel_blend(x.image, back, x.soft)  # the blend ours uses, with M_soft


def load_msagan(model_dir: str | Path, resolution: int, device) -> MSaGANEdit:
    """The generator the gan stage saved in `model_dir` (gan.json + generator.safetensors); MethodUnavailable when
    the stage was off (a folder of photos) or the files are missing or do not match their settings."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta_path = model_dir / GAN_JSON
    if not meta_path.is_file():
        raise MethodUnavailable(f"MSaGAN: {meta_path} not found; run the gan stage (dvc repro gan)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise MethodUnavailable(f"MSaGAN: {meta_path} is not readable JSON ({e}); rerun the gan stage") from e
    if not isinstance(meta, dict):
        raise MethodUnavailable(f"MSaGAN: {meta_path} is not the gan stage's JSON object; rerun the gan stage")
    if "off" in meta:
        raise MethodUnavailable(f"MSaGAN was not trained: {meta['off']}")
    try:
        cfg = GanConfig(**meta["settings"])
    except (KeyError, TypeError, ValueError) as e:
        raise MethodUnavailable(f"MSaGAN: {meta_path} has no valid settings ({e}); rerun the gan stage") from e
    weights = model_dir / GENERATOR
    if not weights.is_file():
        raise MethodUnavailable(f"MSaGAN: {weights} not found; rerun the gan stage")
    G = Generator(cfg.variant, cfg.channels)
    try:
        G.load_state_dict(load_file(weights))
    except Exception as e:  # noqa: BLE001 - a file of other shapes or not safetensors: the same advice
        raise MethodUnavailable(
            f"MSaGAN: {weights} does not match {GAN_JSON}'s settings ({e}); rerun the gan stage"
        ) from e
    return MSaGANEdit(G.to(device).eval(), cfg, resolution, device)
