"""The mask-weighted noise-prediction loss (SPEC section 3).

    w = M_latent + alpha                  (face: 1 + alpha, background: alpha; alpha = 0.05)
    L = mean_i( w_i * (eps_pred_i - eps_i)^2 )

Normalisation, stated because the SPEC leaves it open:
- the mean runs over every element of the batch, B x C x h x w, with w broadcast over the C latent
  channels (the mask has one channel). It is *not* divided by sum(w): an image with a larger face
  contributes a larger loss, so the face dominates as intended, and the loss of an image with no face
  is alpha times the plain MSE rather than being rescaled up to it;
- with alpha = 0 and no face the loss is 0, not NaN.
The MSE is computed in float32 whatever the autocast dtype, as diffusers' training scripts do.
`train.loss_weighting: uniform` makes w = 1 everywhere: the plain MSE of the publication's ablation.
"""

from __future__ import annotations

import torch

WEIGHTINGS = ("masked", "uniform")


def weight_map(latent_mask: torch.Tensor, alpha: float, weighting: str) -> torch.Tensor:
    """w = M_latent + alpha ("masked", the SPEC's loss) or w = 1 everywhere ("uniform": plain MSE, the
    ablation of the publication's Fig. 3), for a binary latent mask of shape (B, 1, h, w)."""
    if latent_mask.ndim != 4 or latent_mask.shape[1] != 1:
        raise ValueError(f"latent mask must have shape (B, 1, h, w), got {tuple(latent_mask.shape)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "uniform":
        return torch.ones_like(latent_mask, dtype=torch.float32)
    return latent_mask.float() + alpha


def masked_mse(
    eps_pred: torch.Tensor, eps: torch.Tensor, latent_mask: torch.Tensor, alpha: float, weighting: str
) -> torch.Tensor:
    """mean(w * (eps_pred - eps)^2) over B x C x h x w (see the module docstring and `weight_map`)."""
    if eps_pred.shape != eps.shape:
        raise ValueError(f"prediction {tuple(eps_pred.shape)} and target {tuple(eps.shape)} differ in shape")
    if latent_mask.shape[-2:] != eps.shape[-2:] or latent_mask.shape[0] != eps.shape[0]:
        raise ValueError(f"latent mask {tuple(latent_mask.shape)} does not match the latents {tuple(eps.shape)}")
    w = weight_map(latent_mask, alpha, weighting)
    return (w * (eps_pred.float() - eps.float()) ** 2).mean()
