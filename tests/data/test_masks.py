import io
import json
import urllib.error
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import config
from facepaint.data import celebamask
from facepaint import masks
from facepaint.common.report import DatasetError
from facepaint.method.masks import BISENET_CLASSES, BiSeNetParser, face_mask, latent_mask, parts_union_from_labels
from facepaint.data.masks import MaskConfig, compute_masks, mask_metadata
from facepaint.common.images import decode_png, encode_png, resize_binary
from facepaint.method.blend import soft_mask
from facepaint.method.models import ModelLoadError
from stages import masks as masks_stage

PARTS = config("masks", MaskConfig).parts  # the face parts of params.yaml


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


def test_soft_mask_properties():
    m = np.zeros((64, 64), dtype=bool)
    m[16:48, 16:48] = True
    s = soft_mask(m, sigma=2.0)
    assert s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1
    assert s[32, 32] == pytest.approx(1.0, abs=1e-6)  # deep inside
    assert s[0, 0] == 0.0 and s[16 - 7, 32] == 0.0  # farther than 3 sigma (6 px): exactly zero
    assert s[16 - 5, 32] > 0  # within reach of the blur
    assert s[16, 32] == pytest.approx(0.5, abs=0.12)  # the edge is about half
    assert np.allclose(s, s[:, ::-1]) and np.allclose(s, s.T)
    assert np.array_equal(soft_mask(m, 0), m.astype(np.float32))


def test_resize_binary_and_face_mask():
    m = np.zeros((512, 512), dtype=bool)
    m[128:384, 128:384] = True
    small = resize_binary(m, 128)
    assert small.shape == (128, 128) and small[32:96, 32:96].all() and small.sum() == 64 * 64
    fm = face_mask(m, resolution=128, latent_factor=8)
    assert fm.beta == pytest.approx(0.25) and fm.latent.shape == (16, 16) and fm.latent.sum() == 64
    assert fm.mask.shape == (128, 128)
    wide = resize_binary(m[:, :256], (64, 128))  # (width, height): a non-square mask
    assert wide.shape == (128, 64) and wide[32:96, 32:].all()


def test_png_encoding_roundtrip():
    rng = np.random.default_rng(1)
    b = rng.random((40, 40)) > 0.5
    assert np.array_equal(decode_png(encode_png(b)), b)
    f = rng.random((40, 40)).astype(np.float32)
    assert np.abs(decode_png(encode_png(f)) - f).max() <= 0.5 / 255 + 1e-6
    assert len(encode_png(np.zeros((512, 512), bool))) < 600  # 1-bit PNG: compact


def test_bisenet_classes_are_mapped_by_name_not_index():
    labels = np.arange(len(BISENET_CLASSES), dtype=np.uint8).reshape(1, -1)
    union = parts_union_from_labels(labels, ("skin", "nose", "u_lip"))
    picked = [BISENET_CLASSES[i] for i in np.flatnonzero(union[0])]
    assert picked == ["skin", "nose", "u_lip"]
    # The CelebAMask-HQ part order differs: index-based mapping would pick other classes.
    assert celebamask.PART_NAMES.index("nose") != BISENET_CLASSES.index("nose")
    assert set(celebamask.PART_NAMES) == set(BISENET_CLASSES) - {"background"}


def test_config_validation():
    base = asdict(cfg())
    with pytest.raises(ValueError, match="unknown face part"):
        MaskConfig(**{**base, "parts": ["skin", "face"]})
    with pytest.raises(ValueError, match="backend"):
        MaskConfig(**{**base, "backend": "sam"})
    with pytest.raises(ValueError, match="multiple of masks.latent_factor"):
        MaskConfig(**{**base, "resolution": 100})
    with pytest.raises(TypeError):
        MaskConfig()  # no hidden defaults: every setting comes from params.yaml


def test_metadata_holds_what_made_the_table_and_nothing_else():
    """sigma and the speed knobs cannot change the masks table, so its metadata (which reaches the latent
    cache's digest and the artifact) does not carry them."""
    meta = mask_metadata(cfg())
    assert "sigma" not in meta and not set(MaskConfig.SPEED_KNOBS) & set(meta)
    assert meta["parts"] == list(PARTS) and meta["resolution"] == 64 and meta["backend"] == "annotations"
    assert mask_metadata(cfg(sigma=7.0, workers=3, batch_size=1)) == meta


# ------------------------------------------------------------------------------- annotations stage


def cfg(**kw):
    """The demo's masks params at 64 px, in-process, tolerant of unusable images unless a test says otherwise."""
    return config(
        "masks",
        MaskConfig,
        **{**dict(resolution=64, batch_size=4, workers=0, min_size=32, max_unusable_fraction=0.9), **kw},
    )


def test_annotation_masks_match_the_part_union(demo_root):
    ids = list(range(12))
    df, report = compute_masks(demo_root, ids, cfg(), progress=False)
    assert df["id"].tolist() == ids and report.unusable == []
    row = df.iloc[3]
    union = np.zeros((64, 64), bool)
    for part in PARTS:
        p = celebamask.part_mask_path(demo_root, 3, part)
        if p.exists():
            union |= np.asarray(Image.open(p)) > 127
    expected = face_mask(union, 64, 8)
    assert np.array_equal(decode_png(row["mask"]), expected.mask)
    assert np.array_equal(decode_png(row["latent"]), expected.latent)
    assert row["beta"] == pytest.approx(expected.beta) and 0.05 < row["beta"] < 0.7
    assert list(df.columns) == ["id", "beta", "mask", "latent", "width", "height", "iou_annotations"]  # no soft mask
    assert (row["width"], row["height"]) == (128, 128)


def test_worker_processes_give_the_same_masks(demo_root):
    a, _ = compute_masks(demo_root, range(6), cfg(workers=0), progress=False)
    b, _ = compute_masks(demo_root, range(6), cfg(workers=2, batch_size=2), progress=False)
    assert a.equals(b)


def _jpeg_bytes(im, **kw):
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def break_dataset(root):
    """Inject every kind of bad input the stage must survive; returns {id: expected reason fragment}."""
    img = lambda i: celebamask.image_path(root, i)  # noqa: E731
    data = img(0).read_bytes()
    img(0).write_bytes(data[: len(data) // 3])  # truncated JPEG
    img(1).write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")  # corrupt
    Image.open(img(2)).convert("L").save(img(2))  # grayscale: usable, noted
    Image.open(img(3)).convert("CMYK").save(img(3))  # CMYK: usable, noted
    img(4).write_bytes(_png(Image.open(img(4)).convert("RGBA")))  # RGBA PNG named .jpg: usable, noted
    Image.open(img(5)).crop((0, 0, 128, 100)).save(img(5))  # not square
    Image.open(img(6)).resize((16, 16)).save(img(6))  # tiny
    for part in celebamask.PART_NAMES:  # no part masks at all
        celebamask.part_mask_path(root, 7, part).unlink(missing_ok=True)
    for part in PARTS:  # part files present but empty: no face pixels
        p = celebamask.part_mask_path(root, 8, part)
        if p.exists():
            Image.new("L", Image.open(p).size, 0).save(p)
    img(9).unlink()  # absent image for a listed id (partial download: only the split stage sees it)
    return {
        0: "corrupt or unreadable",
        1: "corrupt or unreadable",
        5: "not square",
        6: "too small",
        7: "missing part masks",
        8: "no face pixels",
    }


def _png(im):
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_bad_inputs_are_reported_with_id_and_reason(demo_copy):
    expected = break_dataset(demo_copy)
    ids = [i for i in range(12) if i != 9]
    df, report = compute_masks(demo_copy, ids, cfg(), progress=False)
    got = {p.id: p.reason for p in report.unusable}
    assert set(got) == set(expected)
    for i, fragment in expected.items():
        assert fragment in got[i], (i, got[i])
    assert sorted(df["id"]) == [2, 3, 4, 10, 11]
    warned = {p.id: p.reason for p in report.warnings}
    assert "converted from L" in warned[2] and "converted from CMYK" in warned[3] and "RGBA" in warned[4]
    assert report.total == 11 and report.unusable_fraction == pytest.approx(6 / 11)


def test_stage_fails_over_threshold_and_writes_report_but_no_parquet(demo_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    break_dataset(demo_copy)
    import pandas as pd

    from facepaint.common.io import write_parquet

    write_parquet(
        pd.DataFrame({"id": [i for i in range(12) if i != 9], "split": "train", "present": True}),
        tmp_path / "split.parquet",
    )
    out = tmp_path / "masks.parquet"
    with pytest.raises(DatasetError, match=r"6 of 11 items are unusable .*masks.max_unusable_fraction"):
        masks_stage.run(
            demo_copy, cfg(max_unusable_fraction=0.2), split=tmp_path / "split.parquet", out=out, progress=False
        )
    assert not out.exists()
    report = json.loads((tmp_path / "data/reports/masks.json").read_text())
    assert report["counts"]["unusable"] == 6 and {u["id"] for u in report["unusable"]} == {0, 1, 5, 6, 7, 8}
    df = masks_stage.run(
        demo_copy, cfg(max_unusable_fraction=0.6), split=tmp_path / "split.parquet", out=out, progress=False
    )
    assert out.exists() and len(df) == 5


# ----------------------------------------------------------------------------------------- BiSeNet


def test_bisenet_backend_end_to_end_with_random_weights(demo_root, random_bisenet_weights):
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights), max_unusable_fraction=1.0)
    parser = BiSeNetParser(c.bisenet_weights, "cpu")
    labels = parser.labels(np.zeros((2, 512, 512, 3), np.uint8))
    assert labels.shape == (2, 512, 512) and labels.dtype == np.uint8 and labels.max() < 19
    a, ra = compute_masks(demo_root, range(5), c, progress=False, parser=parser)
    b, _ = compute_masks(demo_root, range(5), cfg(**{**vars(c), "batch_size": 2}), progress=False, parser=parser)
    # Random weights label pixels arbitrarily; whatever they give, batching must not change it.
    assert a.drop(columns="beta").equals(b.drop(columns="beta")) and np.allclose(a.beta, b.beta)
    assert len(a) + len(ra.unusable) == 5
    for row in a.itertuples():
        assert decode_png(row.mask).shape == (64, 64) and decode_png(row.latent).shape == (8, 8)


class LabelNet(torch.nn.Module):
    """Stands in for BiSeNet's network: logits that make every pixel of the left half class
    `left` and of the right half class `right`."""

    def __init__(self, left, right):
        super().__init__()
        self.left, self.right = left, right

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.zeros(b, 19, h, w, dtype=x.dtype)
        logits[:, self.left, :, : w // 2] = 1
        logits[:, self.right, :, w // 2 :] = 1
        return (logits,)


def test_bisenet_labels_flow_through_the_name_mapping(demo_root, random_bisenet_weights):
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights), parts=("nose",))
    parser = BiSeNetParser(c.bisenet_weights, "cpu")
    parser.net = LabelNet(left=BISENET_CLASSES.index("nose"), right=BISENET_CLASSES.index("hair"))
    df, _ = compute_masks(demo_root, [0], c, progress=False, parser=parser)
    m = decode_png(df.iloc[0]["mask"])
    assert m[:, :32].all() and not m[:, 32:].any() and df.iloc[0]["beta"] == pytest.approx(0.5)
    parser.net = LabelNet(left=celebamask.PART_NAMES.index("nose"), right=BISENET_CLASSES.index("hair"))
    df, report = compute_masks(demo_root, [0], c, progress=False, parser=parser)
    assert df.empty and "no face pixels" in report.unusable[0].reason  # index 1 is skin to BiSeNet


def test_parser_masks_are_compared_with_the_annotations(demo_root, random_bisenet_weights):
    """Where the parser runs on an annotated image, iou_annotations is the IoU of the two unions at the
    training resolution; the annotations backend keeps its own M and only gains the column."""
    skin = BISENET_CLASSES.index("skin")
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights))
    parser = BiSeNetParser(c.bisenet_weights, "cpu")
    parser.net = LabelNet(left=skin, right=skin)  # the parser calls every pixel skin: its M is the whole image
    parsed, _ = compute_masks(demo_root, range(4), c, progress=False, parser=parser)
    truth, _ = compute_masks(demo_root, range(4), cfg(), progress=False)
    assert truth["iou_annotations"].isna().all()  # no parser ran
    assert (parsed["beta"] == 1.0).all()
    # IoU(everything, A) = |A| / |image| = the annotation's beta
    assert np.allclose(parsed["iou_annotations"], truth["beta"], atol=1e-6)
    both, _ = compute_masks(demo_root, range(4), cfg(bisenet_weights=str(random_bisenet_weights)), False, parser)
    assert both.drop(columns="iou_annotations").equals(truth.drop(columns="iou_annotations"))
    assert np.allclose(both["iou_annotations"], truth["beta"], atol=1e-6)
    summary = masks.iou_summary(both, True)
    assert summary["images"] == 4 and summary["mean"] == pytest.approx(truth["beta"].mean())
    assert masks.iou_summary(truth, False, "no weights") == "unavailable: no weights"


def test_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert masks.iou(a, b) == pytest.approx(4 / 12) and masks.iou(a, a) == 1.0 and masks.iou(~a & a, ~a & a) == 1.0


def test_masks_stage_reports_the_iou_or_why_not(demo_project, random_bisenet_weights, monkeypatch):
    from stages import masks as masks_stage

    monkeypatch.chdir(demo_project)
    root = demo_project / "data/demo"
    masks_stage.run(root, cfg(), out=Path("m.parquet"), metrics=Path("m.json"), progress=False)
    saved = json.loads(Path("m.json").read_text())
    assert saved["iou_parser_vs_annotations"].startswith("unavailable: the parser did not run")
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights), max_unusable_fraction=1.0)
    df = masks_stage.run(root, c, out=Path("b.parquet"), metrics=Path("b.json"), progress=False)
    saved = json.loads(Path("b.json").read_text())
    assert saved["backend"] == "bisenet" and saved["iou_parser_vs_annotations"]["images"] == len(df) > 0
    assert df["iou_annotations"].between(0, 1).all()


def test_missing_bisenet_weights_name_the_file_and_url(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError) as e:
        BiSeNetParser(tmp_path / "nope.pth")
    assert "nope.pth" in str(e.value) and masks.BISENET_URL in str(e.value)

    import facexlib.utils

    def offline(*a, **k):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(masks, "default_bisenet_path", lambda: tmp_path / "cache" / masks.BISENET_FILE)
    monkeypatch.setattr(facexlib.utils, "load_file_from_url", offline)
    with pytest.raises(ModelLoadError) as e:
        BiSeNetParser(None)
    msg = str(e.value)
    assert masks.BISENET_URL in msg and "masks.bisenet_weights" in msg and str(tmp_path / "cache") in msg


def test_wrong_weights_file_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="19-class BiSeNet"):
        BiSeNetParser(tmp_path / "other.pth")


# ------------------------------------------------------------------------------------ real fixture


@pytest.mark.fixture
def test_annotations_on_real_fixture(fixture_root):
    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    df, report = compute_masks(
        fixture_root, ids, cfg(resolution=512, sigma=4.0, workers=2, batch_size=16), progress=False
    )
    assert len(df) == 200 and report.unusable == [] and df["id"].tolist() == ids
    assert df["beta"].between(0.05, 0.8).all(), df["beta"].describe()
    m = decode_png(df.iloc[0]["mask"])
    assert m.shape == (512, 512) and decode_png(df.iloc[0]["latent"]).shape == (64, 64)
