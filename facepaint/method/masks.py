"""Face masks (SPEC section 1): the binary face mask M, the latent mask and beta, and the face parser.

- M: the union of the configured face parts (skin, brows, eyes, nose, mouth, lips), from the CelebAMask-HQ
  part annotations (facepaint.data.masks) or from facexlib's 19-class BiSeNet face parser (`BiSeNetParser`,
  any photo), whose classes are mapped to part names by name, never by raw index.
- latent mask: M averaged over each latent cell (factor x factor pixels) and binarized at 0.5
  (`latent_mask`): the UNet's mask channel in training (the latent cache) and in editing
  (facepaint.method.generate); with the image side a multiple of the factor, it commutes with horizontal flips.
- beta = mean(M), the face ratio that gates the text adapter.
The soft mask M_soft = G_sigma * M is the blend's (facepaint.method.blend).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facepaint.common.images import resize_binary
from facepaint.method.models import ModelLoadError, facexlib_cache, facexlib_weights, pick_device

# facexlib's BiSeNet class order (face-parsing.PyTorch / CelebAMask-HQ training); differs from the
# order of celebamask.PART_NAMES, hence the mapping by name.
BISENET_CLASSES = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
BISENET_URL = "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"
BISENET_FILE = "parsing_bisenet.pth"
BISENET_SIZE = 512  # the parser's input side
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FaceMask:
    mask: np.ndarray  # bool (R, R): M
    latent: np.ndarray  # bool (R/f, R/f): M_latent
    beta: float  # mean(M)


def latent_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """M averaged over factor x factor cells, binarized at 0.5."""
    h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask side {h}x{w} is not a multiple of the latent factor {factor}")
    cells = mask.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return cells >= 0.5


def face_mask(mask: np.ndarray, resolution: int, latent_factor: int) -> FaceMask:
    """M, M_latent and beta from a face mask at any resolution (M_soft is made where it is used: `soft_mask`)."""
    m = resize_binary(mask, resolution)
    return FaceMask(mask=m, latent=latent_mask(m, latent_factor), beta=float(m.mean()))


def parts_union_from_labels(labels: np.ndarray, parts, classes=BISENET_CLASSES) -> np.ndarray:
    """Union of the named parts in a parser label map (class index per pixel), mapped by name."""
    idx = [classes.index(p) for p in parts if p in classes]
    return np.isin(labels, idx)


def default_bisenet_path() -> Path:
    """Where facexlib's own downloader keeps the weights (site-packages/facexlib/weights)."""
    return facexlib_cache(BISENET_FILE)


def bisenet_weights_path(weights: str | os.PathLike | None) -> Path:
    """The weights file to use: the configured path, or facexlib's cached/downloaded file."""
    hint = (
        f"Download {BISENET_FILE} from {BISENET_URL} and point masks.bisenet_weights at it (or copy it to "
        f"{default_bisenet_path()}), or use masks.backend: annotations (CelebAMask-HQ part masks)."
    )
    return facexlib_weights("BiSeNet", BISENET_FILE, BISENET_URL, weights, hint)


class BiSeNetParser:
    """facexlib's BiSeNet: RGB uint8 images in, per-pixel class labels (BISENET_CLASSES) out."""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        half: bool = True,
        channels_last: bool = True,
    ):
        from facexlib.parsing.bisenet import BiSeNet

        self.weights = bisenet_weights_path(weights)
        # weights_only: never unpickle arbitrary objects from a downloaded file.
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        net = BiSeNet(num_class=len(BISENET_CLASSES))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"{self.weights} does not hold 19-class BiSeNet weights ({BISENET_URL}): {str(e)[:300]}"
            ) from e
        self.device = pick_device(device)
        self.dtype = torch.float16 if (half and self.device.type == "cuda") else torch.float32
        self.net = net.eval().to(self.device, self.dtype)
        # NHWC convolutions on a GPU (tensor-core kernels); the CPU keeps NCHW
        self.memory_format = (
            torch.channels_last if (channels_last and self.device.type == "cuda") else torch.contiguous_format
        )
        self.net = self.net.to(memory_format=self.memory_format)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def labels(self, batch: np.ndarray) -> np.ndarray:
        """(B, 512, 512, 3) uint8 RGB -> (B, 512, 512) uint8 labels."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self.mean) / self.std).to(self.dtype).contiguous(memory_format=self.memory_format)
        logits = self.net(x)[0]
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()


def face_crop(mask: np.ndarray, padding: float) -> tuple[int, int, int]:
    """(x0, y0, side): the square around the mask's bounding box, `padding` x its longer side added on
    each side, centred on the box and shifted to lie inside the image (shrunk when the image is narrower)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = min(math.ceil(max(bx1 - bx0, by1 - by0) * (1 + 2 * padding)), w, h)
    x0 = int(np.clip(round((bx0 + bx1 - side) / 2), 0, w - side))
    y0 = int(np.clip(round((by0 + by1 - side) / 2), 0, h - side))
    return x0, y0, side
