"""Evaluation metrics (SPEC section 5): FID (realism), background PSNR and LPIPS (preservation),
PickScore (prompt fit).

Images are uint8 HxWx3 numpy arrays throughout. The networks come from torchmetrics/torch-fidelity
(Inception, LPIPS) and transformers (PickScore). A metric whose weights cannot be had raises
`MetricUnavailable` from its constructor, with the reason and how to supply the weights; the caller
records that reason instead of a number. A metric left out of params.yaml `evaluate.metrics` (the demo profile
leaves out these three, whose weights are downloads: `DOWNLOADS`) is never constructed, so nothing is fetched.

Background (what PSNR and LPIPS "background" mean): the pixels farther than `dilation` pixels
(Euclidean) from every pixel of the binary face mask M, i.e. the complement of M dilated by a disk
of radius `dilation` (see `background_region`). The dilation keeps the blended seam out of the
background figures. Whole-image figures are reported beside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_path
from facepaint.method.models import hub_unreachable, pick_device

# Files torch.hub caches in $TORCH_HOME/hub/checkpoints, and where they come from.
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
# What each metric's constructor would download when its weights are not here (the evaluation's off notes)
DOWNLOADS = {
    "fid": f"the FID Inception-v3 weights ({INCEPTION_FILE}, 92 MB, from GitHub)",
    "lpips": f"torchvision's VGG16 ({VGG16_FILE}, 528 MB, from download.pytorch.org)",
    "pickscore": f"{PICKSCORE_MODEL}, a CLIP ViT-H/14 (3.9 GB), and the processor of {PICKSCORE_PROCESSOR} "
    "(from the Hugging Face hub)",
}


class MetricUnavailable(FacepaintError):
    """A metric's weights or packages cannot be had; the message says what is missing and how to supply it."""


def _hub_weights_missing(
    what: str, filename: str, url: str, err: Exception, alternative: str = ""
) -> MetricUnavailable:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return MetricUnavailable(
        f"{what}: its weights {filename} are not in {checkpoints} and could not be fetched from {url} "
        f"({type(err).__name__}: {err}). On a machine with internet download that URL and put the file into "
        f"{checkpoints} (or into $TORCH_HOME/hub/checkpoints with TORCH_HOME set){alternative}."
    )


# ------------------------------------------------------------------------------------ pixel regions


def _check_image(img, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be a uint8 HxWx3 array, got {img.dtype} {img.shape}")
    return img


def _check_pair(a, b, region) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    a, b = _check_image(a, "a"), _check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != a.shape[:2]:
            raise ValueError(f"region {region.shape} does not match the images {a.shape[:2]}")
        if not region.any():
            raise ValueError("region is empty: no pixel to compare")
    return a, b, region


def background_region(mask: np.ndarray, dilation: int) -> np.ndarray:
    """The background of an image with binary face mask `mask` (bool HxW): True at every pixel whose
    Euclidean distance to the nearest face pixel is more than `dilation` pixels.

    Equivalently, the complement of M dilated by the disk {(dy, dx): dy^2 + dx^2 <= dilation^2}:
    a pixel `dilation` pixels straight above the face is not background, one diagonally at (d, d) is
    once d*sqrt(2) > dilation. dilation=0 gives the plain complement of M; an empty mask gives the
    whole image.
    """
    mask = np.asarray(mask, dtype=bool)
    if dilation < 0:
        raise ValueError(f"dilation must be >= 0, got {dilation}")
    if not mask.any():
        return np.ones_like(mask)
    return distance_transform_edt(~mask) > dilation


def composite_outside(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`b` inside `region`, `a` elsewhere: comparing `a` with this counts only differences inside `region`."""
    a, b, region = _check_pair(a, b, region)
    return np.where(region[..., None], b, a)


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 images, 10*log10(255^2 / MSE), the MSE taken over all channels of
    the pixels in `region` (bool HxW; None: the whole image). inf when they agree there."""
    a, b, region = _check_pair(a, b, region)
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff[region] ** 2 if region is not None else diff**2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# -------------------------------------------------------------------------------------------- LPIPS


class LPIPS:
    """LPIPS with the VGG16 backbone (torchmetrics' LearnedPerceptualImagePatchSimilarity, which
    ships the linear-layer weights; the backbone is torchvision's ImageNet VGG16).

    LPIPS has no masked mode, so the region figure is LPIPS(a, composite_outside(a, b, region)):
    pixels outside the region are made identical, and only differences inside it count (through the
    receptive fields they also reach features near the region's edge).
    """

    def __init__(self, device: str = "auto"):
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        except ImportError as e:
            raise MetricUnavailable(
                f"LPIPS needs torchmetrics and torchvision ({e}); pip install torchmetrics torchvision"
            ) from e
        try:
            metric = LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True)
        except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; bad hash/file a RuntimeError
            raise _hub_weights_missing("LPIPS (VGG) unavailable", VGG16_FILE, VGG16_URL, e) from e
        self.device = pick_device(device)
        self.net = metric.net.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
        a, b, region = _check_pair(a, b, region)
        if region is not None:
            b = composite_outside(a, b, region)
        x, y = (torch.from_numpy(im).permute(2, 0, 1)[None].to(self.device, torch.float32) / 255 for im in (a, b))
        return float(self.net(x, y, normalize=True).squeeze())


# ---------------------------------------------------------------------------------------------- FID


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2)).

    The last trace is taken as Tr((A sigma2 A)^(1/2)) with A = sigma1^(1/2): the same number
    (sigma1 sigma2 is similar to A sigma2 A), from symmetric eigendecompositions instead of
    pytorch-fid's scipy.linalg.sqrtm. It is exact for singular covariances (100 images in 2048-d),
    where pytorch-fid's eps offset shifts FID by about 2, needs no imaginary-part clean-up, and at
    2048-d takes 6 s on 2 CPU cores where sqrtm takes 37 s.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _batches(images, batch_size: int):
    """Stacks of up to `batch_size` images; a change of image size starts a new stack."""
    batch = []
    for img in images:
        img = _check_image(img)
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield np.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield np.stack(batch)


class FID:
    """Frechet Inception Distance between a set of images and cached reference statistics.

    The default feature extractor is the FID Inception-v3 (the TF-ported weights of torch-fidelity,
    via torchmetrics; 2048-d pool features of images resized to 299 px with antialiased bilinear
    interpolation, torchmetrics' default). `feature_extractor` may be
    any callable mapping a uint8 tensor (N, 3, H, W) to float features (N, D).
    """

    def __init__(
        self,
        feature_extractor=None,
        device: str = "auto",
        batch_size: int = 32,
        weights_path: str | os.PathLike | None = None,
    ):
        self.device = pick_device(device)
        self.batch_size = batch_size
        if feature_extractor is not None:
            self.extractor, self.name = (
                feature_extractor,
                getattr(feature_extractor, "name", getattr(feature_extractor, "__name__", "injected")),
            )
            return
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            inception = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=None if weights_path is None else str(weights_path),
            )
        except ModuleNotFoundError as e:
            raise MetricUnavailable(f"FID needs torch-fidelity ({e}); pip install torch-fidelity") from e
        except (OSError, RuntimeError, ValueError) as e:
            if weights_path is not None:
                raise MetricUnavailable(
                    f"FID unavailable: could not load the Inception weights {weights_path} ({type(e).__name__}: {e})"
                ) from e
            raise _hub_weights_missing(
                "FID (Inception) unavailable",
                INCEPTION_FILE,
                INCEPTION_URL,
                e,
                ", or pass the file's path as the FID weights path",
            ) from e
        self.extractor, self.name = inception.to(self.device), "torch-fidelity inception-v3-compat pool3 (2048)"

    @torch.inference_mode()
    def features(self, images):
        """Features (float64, (B, D)) of each batch of `images` (an iterable of uint8 HxWx3 arrays)."""
        for batch in _batches(images, self.batch_size):
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            yield torch.as_tensor(self.extractor(x)).double().cpu().numpy().reshape(len(batch), -1)

    def reference_stats(self, images) -> tuple[np.ndarray, np.ndarray, int]:
        """(mean, covariance, count) of the features of `images`, accumulated batch by batch."""
        n, shift = 0, None
        for f in self.features(images):
            if shift is None:  # sums about the first batch's mean, for numerical stability
                shift, total, outer = f.mean(0), np.zeros(f.shape[1]), np.zeros((f.shape[1],) * 2)
            x = f - shift
            total, outer, n = total + x.sum(0), outer + x.T @ x, n + len(x)
        if n < 2:
            raise ValueError(f"FID needs at least 2 images to estimate a covariance, got {n}")
        m = total / n
        return shift + m, (outer - n * np.outer(m, m)) / (n - 1), n

    def score(self, images, ref_stats) -> float:
        """FID of `images` against `ref_stats` (mu, sigma, ...) from `reference_stats` or `load_stats`."""
        mu, sigma, _ = self.reference_stats(images)
        return frechet_distance(mu, sigma, ref_stats[0], ref_stats[1])

    @staticmethod
    def save_stats(
        path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray, n: int, meta: dict | None = None
    ) -> None:
        """Write statistics atomically as safetensors; `meta` (JSON-able, e.g. the reference set) rides along."""
        from safetensors.numpy import save_file

        with atomic_path(path) as tmp:
            save_file(
                {"mu": np.ascontiguousarray(mu, np.float64), "sigma": np.ascontiguousarray(sigma, np.float64)},
                str(tmp),
                metadata={"n": str(int(n)), "meta": json.dumps(meta or {})},
            )

    @staticmethod
    def load_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int, dict]:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            info = f.metadata()
            return f.get_tensor("mu"), f.get_tensor("sigma"), int(info["n"]), json.loads(info["meta"])


# ---------------------------------------------------------------------------------------- PickScore


class PickScore:
    """PickScore_v1: logit_scale.exp() * cosine(image embedding, prompt embedding), per image-prompt pair.

    `model`/`processor` are Hugging Face ids or local directories (save_pretrained layouts).
    """

    def __init__(
        self,
        device: str = "auto",
        model: str = PICKSCORE_MODEL,
        processor: str = PICKSCORE_PROCESSOR,
        batch_size: int = 16,
    ):
        from transformers import AutoModel, AutoProcessor

        self.device, self.batch_size = pick_device(device), batch_size
        loaded = {}
        for key, cls, ref in (("processor", AutoProcessor, processor), ("model", AutoModel, model)):
            try:
                reason = hub_unreachable(ref)  # fails in a second instead of minutes of retries
                if reason:
                    raise OSError(reason)
                # weights from safetensors only (PickScore_v1 ships model.safetensors): never a pickled .bin
                loaded[key] = cls.from_pretrained(ref, **({"use_safetensors": True} if key == "model" else {}))
            except (OSError, ValueError) as e:  # hub/cache errors subclass these
                where = (
                    f"the local directory {ref} does not hold it"
                    if os.path.isdir(ref)
                    else f"'{ref}' is not in the Hugging Face cache "
                    f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub could not be reached"
                )
                raise MetricUnavailable(
                    f"PickScore unavailable: could not load its {key}: {where} ({type(e).__name__}). "
                    f"On a machine with internet run `huggingface-cli download {PICKSCORE_MODEL}` and "
                    f"`huggingface-cli download {PICKSCORE_PROCESSOR}` and copy the cache here "
                    f"(or set HF_HOME to it), or pass local directories."
                ) from e
        self.processor, self.model = loaded["processor"], loaded["model"].to(self.device).eval()

    def _embed(self, out) -> torch.Tensor:
        emb = out if torch.is_tensor(out) else out.pooler_output  # transformers 5 returns a model output
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray], prompts: list[str]) -> list[float]:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        scores = []
        for i in range(0, len(images), self.batch_size):
            ims = [_check_image(im) for im in images[i : i + self.batch_size]]
            img_in = self.processor(images=ims, return_tensors="pt").to(self.device)
            txt_in = self.processor(
                text=list(prompts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=77,
                return_tensors="pt",
            ).to(self.device)
            img = self._embed(self.model.get_image_features(**img_in))
            txt = self._embed(self.model.get_text_features(**txt_in))
            scores += (self.model.logit_scale.exp() * (img * txt).sum(-1)).float().cpu().tolist()
        return scores
