"""Helpers the tests share (import them: `from tests.helpers import config, textured`); the fixtures are in
conftest.py."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def config(name: str, cls, **overrides):
    """Section `name` of the repository's params.yaml (the demo profile) as `cls`, with `overrides`: the
    configs have no defaults, so tests take every setting from params.yaml and change only what they test."""
    import yaml

    from stages.common import section

    return section(yaml.safe_load((REPO / "params.yaml").read_text()), name, cls, **overrides)


def tiny_conditions(resolution: int = 64, **changes):
    """The Conditions of a tiny-model artifact trained at `resolution` with the demo's params."""
    import dataclasses

    import yaml

    from tools import tiny_artifact

    c = tiny_artifact.tiny_conditions(yaml.safe_load((REPO / "params.yaml").read_text()), resolution)
    return dataclasses.replace(c, **changes)


# ------------------------------------------------------------------ helpers of the editing tests


def random_adapter(comps, std=0.5):
    """A FaceAdapter at the text encoder's width with a non-zero W2 (so it changes an edit), seeded."""
    import torch

    from facepaint.method.adapter import FaceAdapter

    torch.manual_seed(0)
    adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
    torch.nn.init.normal_(adapter.w2.weight, std=std)
    return adapter


def box_mask(h, w, y0, y1, x0, x1):
    import numpy as np

    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def textured(h, w, seed=0):
    """A photo-like uint8 image: smooth gradients plus noise (so VAE round trips visibly change it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(xx / 17 + c) * np.cos(yy / 23) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


# Batching changes the summation order inside the batched convolutions and matrix products on the CPU
# (the noise is the same: each crop has its own generator), so a batched crop may differ from the same
# crop generated alone by a rounding step: at most 2/255 per channel, on at most 1% of the values.
BATCH_TOL, BATCH_FRACTION = 2, 0.01


def assert_close_images(a, b, tol=BATCH_TOL, fraction=BATCH_FRACTION):
    import numpy as np

    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= tol and (diff > 0).mean() <= fraction, (diff.max(), (diff > 0).mean())
