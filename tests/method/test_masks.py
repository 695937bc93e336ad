"""The method's face masks (facepaint.method.masks): M_latent, beta, BiSeNet's class mapping and loading."""

import urllib.error

import numpy as np
import pytest
import torch

from facepaint.data import celebamask
from facepaint.method import masks, models
from facepaint.method.masks import BISENET_CLASSES, BiSeNetParser, face_mask, latent_mask, parts_union_from_labels
from facepaint.method.models import ModelLoadError

# ----------------------------------------------------------------------------------- mask algebra


def test_latent_mask_hand_example():
    m = np.zeros((16, 16), dtype=bool)
    m[0:8, 0:8] = True  # a full cell
    m[8:12, 8:16] = True  # half of the bottom-right cell: 32 of 64 pixels -> exactly 0.5 -> in
    m[0:3, 8:16] = True  # 24 of 64 -> out
    assert latent_mask(m, 8).tolist() == [[True, False], [False, True]]


def test_latent_mask_commutes_with_flip():
    rng = np.random.default_rng(0)
    m = rng.random((64, 64)) > 0.6
    assert np.array_equal(latent_mask(m[:, ::-1], 8), latent_mask(m, 8)[:, ::-1])
    with pytest.raises(ValueError, match="multiple"):
        latent_mask(np.zeros((60, 60), bool), 8)


def test_face_mask_resizes_then_pools():
    m = np.zeros((512, 512), dtype=bool)
    m[128:384, 128:384] = True
    fm = face_mask(m, resolution=128, latent_factor=8)
    assert fm.beta == pytest.approx(0.25) and fm.latent.shape == (16, 16) and fm.latent.sum() == 64
    assert fm.mask.shape == (128, 128) and fm.mask[32:96, 32:96].all() and fm.mask.sum() == 64 * 64
    assert np.array_equal(fm.latent, latent_mask(fm.mask, 8))


# ----------------------------------------------------------------------------------------- BiSeNet


def test_bisenet_classes_are_mapped_by_name_not_index():
    labels = np.arange(len(BISENET_CLASSES), dtype=np.uint8).reshape(1, -1)
    union = parts_union_from_labels(labels, ("skin", "nose", "u_lip"))
    picked = [BISENET_CLASSES[i] for i in np.flatnonzero(union[0])]
    assert picked == ["skin", "nose", "u_lip"]
    # The CelebAMask-HQ part order differs: index-based mapping would pick other classes.
    assert celebamask.PART_NAMES.index("nose") != BISENET_CLASSES.index("nose")
    assert set(celebamask.PART_NAMES) == set(BISENET_CLASSES) - {"background"}


def test_parser_labels_with_random_weights(random_bisenet_weights):
    parser = BiSeNetParser(random_bisenet_weights, "cpu")
    assert parser.weights == random_bisenet_weights
    labels = parser.labels(np.zeros((2, 512, 512, 3), np.uint8))
    assert labels.shape == (2, 512, 512) and labels.dtype == np.uint8 and labels.max() < len(BISENET_CLASSES)


def test_missing_bisenet_weights_name_the_file_and_url(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError) as e:
        BiSeNetParser(tmp_path / "nope.pth")
    assert "nope.pth" in str(e.value) and masks.BISENET_URL in str(e.value)

    import facexlib.utils

    def offline(*a, **k):
        raise urllib.error.URLError("no internet")

    # facexlib's cache is empty and the download fails (no internet)
    monkeypatch.setattr(models, "facexlib_cache", lambda file: tmp_path / "cache" / file)
    monkeypatch.setattr(facexlib.utils, "load_file_from_url", offline)
    with pytest.raises(ModelLoadError) as e:
        BiSeNetParser(None)
    msg = str(e.value)
    assert masks.BISENET_URL in msg and "masks.bisenet_weights" in msg and str(tmp_path / "cache") in msg
    assert "could not be downloaded" in msg and "no internet" in msg


def test_cached_bisenet_weights_are_used_without_a_download(tmp_path, monkeypatch, random_bisenet_weights):
    import facexlib.utils

    def no_download(*a, **k):
        raise AssertionError("downloaded although the weights are cached")

    monkeypatch.setattr(models, "facexlib_cache", lambda file: random_bisenet_weights.parent / file)
    monkeypatch.setattr(facexlib.utils, "load_file_from_url", no_download)
    assert masks.bisenet_weights_path(None) == random_bisenet_weights


def test_wrong_weights_file_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="19-class BiSeNet"):
        BiSeNetParser(tmp_path / "other.pth")
