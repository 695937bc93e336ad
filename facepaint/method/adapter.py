"""The face-aware text adapter (SPEC section 3).

    A(E)  = W2 SiLU(W1 E)                        W1, W2 in R^{d x d}, d = the text encoder's width (768)
    E_hat = E + adapter_scale * beta * A(E)      beta = the face ratio of the image, one scalar per sample

`adapter_scale` is the SPEC's lambda (0.3), params.yaml `train.adapter_scale`; the trained artifact
records it and inference reads it from there (`Artifact.conditions`).

`condition` is the one function that turns text embeddings into UNet conditioning, in training and at
inference, for the conditional and the unconditional (classifier-free guidance) embedding alike.

Initialisation: W1 as a default nn.Linear (Kaiming-uniform), W2 to zero. Then A(E) = 0 and
E_hat = E at step 0, so fine-tuning starts from exactly the base model (tested), and the adapter's
first gradient still flows: dL/dW2 = dL/dA * SiLU(W1 E)^T is non-zero while W1 E is. (The SPEC does
not state an initialisation; zero-initialising the output projection is the usual choice for
residual adapters, e.g. ControlNet's zero convolutions.) No biases: the SPEC's A has none, which
gives 2 * 768^2 = 1,179,648 parameters for SD1.5.
"""

from __future__ import annotations

import torch
from torch import nn


class FaceAdapter(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.w2.weight)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """A(E) for E of shape (B, T, d)."""
        return self.w2(nn.functional.silu(self.w1(embeddings)))


def condition(embeddings: torch.Tensor, beta, adapter: FaceAdapter | None, adapter_scale: float) -> torch.Tensor:
    """E_hat = E + adapter_scale * beta * A(E); `beta` is a float or a (B,) tensor. No adapter: E unchanged."""
    if adapter is None or adapter_scale == 0:
        return embeddings
    beta = torch.as_tensor(beta, dtype=embeddings.dtype, device=embeddings.device)
    if beta.ndim == 0:
        beta = beta.expand(embeddings.shape[0])
    if beta.shape != (embeddings.shape[0],):
        raise ValueError(f"beta must be a scalar or have shape ({embeddings.shape[0]},), got {tuple(beta.shape)}")
    delta = adapter(embeddings.to(adapter.w1.weight.dtype)).to(embeddings.dtype)
    return embeddings + adapter_scale * beta.view(-1, 1, 1) * delta
