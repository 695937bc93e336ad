"""The seeded train/test split (SPEC section 3: 20,000 / 10,000 with seed 42).

The split is over every id the attribute file lists, not only the images present, so a partial
download lands each image in the same split as the full dataset would.

Order: ids sorted by SHA-256 of "<seed>:<id>", the first round(n * train / (train + test)) are
train. A hash order is a uniform random permutation for a given seed, and unlike numpy's or
Python's RNG streams (whose algorithms may change between releases) it is the same on every machine
and version, forever.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from facepaint.common.checks import MAX_SEED, check_fields, check_number


@dataclass
class SplitConfig:  # params.yaml `split`
    seed: int
    train_parts: int  # train : test = train_parts : test_parts
    test_parts: int
    max_malformed_fraction: float  # of attribute-file rows; more fails the stage

    def __post_init__(self):
        check_fields(self, "split")
        if self.train_parts <= 0 or self.test_parts <= 0:
            raise ValueError(
                f"split.train_parts and split.test_parts must be positive, got {self.train_parts}:{self.test_parts}"
            )
        check_number("split.seed", self.seed, 0, MAX_SEED, whole=True)
        check_number("split.max_malformed_fraction", self.max_malformed_fraction, 0, 1)


def n_train(n: int, cfg: SplitConfig) -> int:
    return int(round(n * cfg.train_parts / (cfg.train_parts + cfg.test_parts)))


def _key(seed: int, image_id: int) -> bytes:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).digest()


def split_ids(ids, cfg: SplitConfig) -> pd.Series:
    """Map each id to 'train' or 'test'. Returns a Series indexed by id (sorted), dtype str."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    order = sorted(ids.tolist(), key=lambda i: _key(cfg.seed, i))
    k = n_train(len(ids), cfg)
    labels = {i: ("train" if rank < k else "test") for rank, i in enumerate(order)}
    return pd.Series([labels[i] for i in ids.tolist()], index=pd.Index(ids, name="id"), name="split", dtype=object)
