import math
import urllib.error

import numpy as np
import pytest
import torch
from scipy import linalg

from facepaint.evaluation import metrics
from facepaint.evaluation.metrics import FID, LPIPS, MetricUnavailable, PickScore


def face_and_edit(size=16, lo=5, hi=11):
    """A random image, a square face mask [lo, hi)^2 and an edit that changes only the face."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[lo:hi, lo:hi] = True
    edited = img.copy()
    edited[mask] = 255 - edited[mask]
    return img, mask, edited


@pytest.fixture
def offline_torch_hub(tmp_path, monkeypatch):
    """An empty torch.hub cache whose downloads fail, as on a machine without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network (simulated)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


# --------------------------------------------------------------------------------------------- PSNR


def test_psnr_hand_computed():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 10  # 3 channel errors of 10, 9 of 0: MSE = 300/12 = 25
    b[1, 1, 0] = 20  # plus one of 20: MSE = 700/12
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (700 / 12)))
    region = np.array([[True, False], [False, False]])  # only pixel (0,0): MSE = 300/3 = 100
    assert metrics.psnr(a, b, region) == pytest.approx(10 * math.log10(255**2 / 100))
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a, b, np.array([[False, True], [True, False]])) == math.inf
    for bad in [(a, b[:1]), (a, b.astype(np.float32)), (a, b, np.zeros((2, 2), bool)), (a, b, np.ones((3, 3), bool))]:
        with pytest.raises(ValueError):
            metrics.psnr(*bad)


def test_background_region_is_outside_the_disk_dilated_mask():
    mask = np.zeros((12, 12), bool)
    mask[4:8, 4:8] = True  # face rows/cols 4..7
    assert np.array_equal(metrics.background_region(mask, 0), ~mask)
    bg1 = metrics.background_region(mask, 1)
    assert not bg1[3, 4] and not bg1[4, 8] and bg1[2, 4]  # one pixel straight out is dilated, two are not
    assert bg1[3, 3] and bg1[8, 8]  # the diagonal corner is sqrt(2) > 1 away
    bg2 = metrics.background_region(mask, 2)
    assert not bg2[2, 5] and not bg2[3, 3] and not bg2[8, 8]  # distances 2 and sqrt(2)
    assert bg2[2, 3] and bg2[9, 9] and bg2[1, 5]  # distances sqrt(5), sqrt(8) and 3
    assert bg2.sum() == 144 - (16 + 4 * 4 * 2 + 4)  # face, two 4-pixel rows per side, one pixel per corner
    assert metrics.background_region(np.zeros((3, 3), bool), 5).all()
    with pytest.raises(ValueError):
        metrics.background_region(mask, -1)


def test_face_only_edit_keeps_the_background_identical():
    img, mask, edited = face_and_edit()
    bg = metrics.background_region(mask, 2)
    assert metrics.psnr(img, edited, bg) == math.inf
    assert math.isfinite(metrics.psnr(img, edited))
    comp = metrics.composite_outside(img, edited, bg)  # the edited background, the original face
    assert np.array_equal(comp, img)
    comp = metrics.composite_outside(img, edited, ~bg)
    assert np.array_equal(comp[~bg], edited[~bg]) and np.array_equal(comp[bg], img[bg])


# -------------------------------------------------------------------------------------------- LPIPS


def test_lpips_region_logic_with_a_random_backbone(monkeypatch):
    """The wrapper end to end, with a randomly initialised VGG16 standing in for the ImageNet one."""
    from types import SimpleNamespace

    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)  # torchmetrics keeps only `.features` of the VGG16 it builds
    monkeypatch.setattr(torchvision.models, "vgg16", lambda **kw: SimpleNamespace(features=make_layers(cfgs["D"])))
    lpips = LPIPS(device="cpu")
    img, mask, edited = face_and_edit(size=32, lo=10, hi=22)
    bg = metrics.background_region(mask, 2)
    assert lpips(img, img) == 0
    assert lpips(img, edited) > 0
    assert lpips(img, edited, bg) == 0
    assert lpips(img, edited, ~bg) == pytest.approx(lpips(img, edited))
    other = edited.copy()
    other[:4] = 0  # a change in the background counts there
    assert lpips(img, other, bg) > 0


def test_lpips_without_vgg_weights_is_unavailable(offline_torch_hub):
    with pytest.raises(MetricUnavailable) as e:
        LPIPS(device="cpu")
    msg = str(e.value)
    assert metrics.VGG16_FILE in msg and metrics.VGG16_URL in msg and "hub/checkpoints" in msg


# ---------------------------------------------------------------------------------------------- FID


def test_frechet_distance_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    s1, s2 = np.array([1.0, 4.0, 0.5]), np.array([9.0, 1.0, 2.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # singular covariances stay exact
    assert metrics.frechet_distance([0, 0], np.diag([1.0, 0]), [0, 0], np.diag([4.0, 0])) == pytest.approx(
        1, abs=1e-12
    )
    # non-commuting full covariances: the trace term equals pytorch-fid's Tr(sqrtm(sigma1 sigma2))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert metrics.frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(np.ones(5), s1, np.ones(5), s1) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError):
        metrics.frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


class IndexedFeatures:
    """Feature extractor for 1x1 'images' whose RGB bytes encode a row index into a feature table."""

    name = "indexed"

    def __init__(self, table: np.ndarray):
        self.table = torch.from_numpy(table)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 1, 1)
        idx = x[:, 0, 0, 0].long() * 65536 + x[:, 1, 0, 0].long() * 256 + x[:, 2, 0, 0].long()
        return self.table[idx]


def index_images(start: int, stop: int):
    for i in range(start, stop):
        yield np.array([[[i // 65536, i // 256 % 256, i % 256]]], np.uint8)


def test_fid_with_injected_extractor_on_gaussian_samples(tmp_path):
    n = 20_000
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.0])
    a = rng.normal(size=(3, 3))
    sigma1, sigma2 = a @ a.T + np.eye(3), np.diag([1.0, 2.0, 3.0])
    x, y = rng.multivariate_normal(mu1, sigma1, n), rng.multivariate_normal(mu2, sigma2, n)
    fid = FID(IndexedFeatures(np.concatenate([x, y])), device="cpu", batch_size=4096)

    ref = fid.reference_stats(index_images(n, 2 * n))
    assert ref[2] == n
    np.testing.assert_allclose(ref[0], y.mean(0), atol=1e-12)
    np.testing.assert_allclose(ref[1], np.cov(y, rowvar=False), atol=1e-10)
    score = fid.score(index_images(0, n), ref)
    sample = metrics.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert score == pytest.approx(sample, rel=1e-9)
    assert score == pytest.approx(metrics.frechet_distance(mu1, sigma1, mu2, sigma2), rel=0.05)

    path = tmp_path / "stats" / "ref.safetensors"
    FID.save_stats(path, *ref, meta={"split": "test", "n_images": n})
    mu, sigma, count, meta = FID.load_stats(path)
    assert np.array_equal(mu, ref[0]) and np.array_equal(sigma, ref[1]) and count == n
    assert meta == {"split": "test", "n_images": n}
    assert fid.score(index_images(0, n), (mu, sigma)) == score


def test_fid_batches_and_needs_two_images():
    seen = []

    def extractor(x):
        seen.append(tuple(x.shape))
        return x.float().mean(dim=(2, 3))

    fid = FID(extractor, device="cpu", batch_size=2)
    images = [np.full((s, s, 3), i, np.uint8) for i, s in enumerate([4, 4, 4, 8, 8])]
    mu, sigma, n = fid.reference_stats(images)
    assert seen == [(2, 3, 4, 4), (1, 3, 4, 4), (2, 3, 8, 8)] and n == 5
    assert mu == pytest.approx([2.0] * 3) and sigma[0, 0] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid.reference_stats(images[:1])


@pytest.mark.slow
def test_default_fid_with_a_random_inception(monkeypatch):
    """The default extractor's path (uint8 in, 2048-d pool features out) with random Inception weights."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
    fid = FID(device="cpu", batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    mu, sigma, n = fid.reference_stats(images)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and n == 3
    assert fid.score(images, (mu, sigma)) == pytest.approx(0, abs=1e-3)


def test_default_fid_without_inception_weights_is_unavailable(offline_torch_hub, tmp_path):
    with pytest.raises(MetricUnavailable) as e:
        FID(device="cpu")
    assert metrics.INCEPTION_FILE in str(e.value) and "hub/checkpoints" in str(e.value)
    with pytest.raises(MetricUnavailable, match="missing.pth"):
        FID(device="cpu", weights_path=tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------- PickScore


def test_pickscore_offline_is_unavailable(offline):
    out = offline(
        "from facepaint.evaluation.metrics import *\n"
        "try:\n    PickScore(device='cpu')\n"
        "except MetricUnavailable as e:\n    print(e)\n"
    )
    assert "PickScore unavailable" in out
    assert f"huggingface-cli download {metrics.PICKSCORE_MODEL}" in out
    assert metrics.PICKSCORE_PROCESSOR in out


def test_pickscore_on_a_tiny_local_clip(tmp_path):
    """The scoring path end to end on a tiny random CLIP saved as local directories."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from facepaint.method.models import clip_tokenizer

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(tmp_path / "model")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()).save_pretrained(tmp_path / "proc")

    pick = PickScore(device="cpu", model=str(tmp_path / "model"), processor=str(tmp_path / "proc"), batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    prompts = ["a smiling face", "a face with a beard and glasses", "blond hair"]
    scores = pick(images, prompts)
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores)
    assert pick(images[2:], prompts[2:]) == pytest.approx(scores[2:], abs=1e-5)  # per pair, batch-independent
    assert abs(scores[0]) <= pick.model.logit_scale.exp().item() + 1e-4  # a scaled cosine
    with pytest.raises(ValueError):
        pick(images, prompts[:2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetricUnavailable, match="local directory"):
        PickScore(device="cpu", model=str(tmp_path / "empty"), processor=str(tmp_path / "proc"))
