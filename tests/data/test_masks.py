"""The masks stage's work (facepaint.data.masks): M, M_latent and beta for every dataset image, from the part
annotations, the face parser or MediaPipe's face mesh, the stage's report, its metadata and the
parser-vs-annotations IoU."""

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facepaint.common.images import decode_png
from facepaint.common.io import read_parquet_metadata
from facepaint.common.report import DatasetError
from facepaint.data import celebamask
from facepaint.common.io import sha256_file
from facepaint.data.masks import (
    BACKENDS,
    NO_FACE,
    MaskConfig,
    annotation_union,
    compute_masks,
    iou,
    iou_summary,
    mask_metadata,
)
from facepaint.method import mediapipe
from facepaint.method.masks import BISENET_CLASSES, BiSeNetParser, face_mask
from facepaint.method.models import ModelLoadError
from stages import masks as masks_stage
from tests.helpers import config

PARTS = config("masks", MaskConfig).parts  # the face parts of params.yaml


# ------------------------------------------------------------------------------------------ config


def test_config_validation():
    base = dataclasses.asdict(cfg())
    with pytest.raises(ValueError, match="unknown face part"):
        MaskConfig(**{**base, "parts": ["skin", "face"]})
    with pytest.raises(ValueError, match="backend"):
        MaskConfig(**{**base, "backend": "sam"})
    assert set(BACKENDS) == {"annotations", "bisenet", "mesh"}
    assert MaskConfig(**{**base, "backend": "mesh"}).backend == "mesh"
    assert cfg(backend="mesh").backend == "mesh"  # through params.yaml's section check too
    with pytest.raises(ValueError, match=r"masks.backend must be one of \('annotations', 'bisenet', 'mesh'\)"):
        MaskConfig(**{**base, "backend": "facemesh"})
    with pytest.raises(ValueError, match="multiple of masks.latent_factor"):
        MaskConfig(**{**base, "resolution": 100})
    with pytest.raises(TypeError):
        MaskConfig()  # no hidden defaults: every setting comes from params.yaml


def test_sigma_is_no_mask_setting():
    """The soft mask's sigma is a sampling option (facepaint.method.options), not a setting of the masks table:
    params.yaml's masks section refuses it."""
    assert "sigma" not in {f.name for f in dataclasses.fields(MaskConfig)}
    with pytest.raises(TypeError, match="sigma"):
        MaskConfig(**{**dataclasses.asdict(cfg()), "sigma": 4.0})
    with pytest.raises(SystemExit, match=r"unknown key\(s\) \['sigma'\] in section 'masks'"):
        cfg(sigma=4.0)


def test_metadata_holds_what_made_the_table_and_nothing_else(random_bisenet_weights):
    """The speed knobs cannot change the masks table, so its metadata (which reaches the latent cache's digest
    and the artifact) does not carry them; a parser's masks carry its weights' path and digest."""
    meta = mask_metadata(cfg())
    assert "sigma" not in meta and not set(MaskConfig.SPEED_KNOBS) & set(meta)
    assert meta["parts"] == list(PARTS) and meta["resolution"] == 64 and meta["backend"] == "annotations"
    assert mask_metadata(cfg(workers=3, batch_size=1, channels_last=False)) == meta
    assert mask_metadata(cfg(resolution=128)) != meta
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights))
    parser = BiSeNetParser(c.bisenet_weights, "cpu")
    parsed = mask_metadata(c, parser)
    assert parsed["bisenet_weights"] == str(random_bisenet_weights)
    assert parsed["bisenet_sha256"] == sha256_file(random_bisenet_weights) and len(parsed["bisenet_sha256"]) == 64
    # with the annotations backend the parser only gave iou_annotations: M is not its, the metadata says nothing
    assert "bisenet_sha256" not in mask_metadata(cfg(bisenet_weights=str(random_bisenet_weights)), parser)
    # the mesh's masks carry the model files that made them, by SHA-256
    mesh = mask_metadata(cfg(backend="mesh"))
    assert mesh["backend"] == "mesh" and mesh["mesh_model"] == "mediapipe-facemesh"
    assert mesh["mesh_files"] == mediapipe.FILES and len(mesh["mesh_files"]) == 3
    assert mesh["mesh_forehead_raise"] == mediapipe.FOREHEAD_RAISE
    assert not any(k.startswith("mesh_") for k in meta) and "bisenet_sha256" not in mesh


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


def write_part(root, image_id, part, mask):
    path = celebamask.part_mask_path(root, image_id, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def test_annotation_union_of_the_parts_present(tmp_path):
    """The union of the parts present (a missing part is no error, a missing skin a note); a part mask at
    another square size is resized to the first's; none present, or a non-square mismatch, is an ImageError."""
    from facepaint.common.images import ImageError

    skin, nose, big_eye = np.zeros((8, 8), bool), np.zeros((8, 8), bool), np.zeros((16, 16), bool)
    skin[2:6, 2:6], nose[0, 0], big_eye[12:16, 12:16] = True, True, True
    write_part(tmp_path, 1, "skin", skin)
    write_part(tmp_path, 1, "nose", nose)
    write_part(tmp_path, 1, "l_eye", big_eye)  # 16 x 16: resized to 8 x 8 (its bottom-right 2 x 2)
    union, notes = annotation_union(tmp_path, 1, ("skin", "nose", "l_eye", "mouth"))
    expected = skin | nose
    expected[6:8, 6:8] = True
    assert union.dtype == bool and np.array_equal(union, expected) and notes == []
    write_part(tmp_path, 2, "nose", nose)
    union, notes = annotation_union(tmp_path, 2, ("skin", "nose"))
    assert np.array_equal(union, nose) and notes == ["no skin part mask"]
    with pytest.raises(ImageError, match="missing part masks: none of skin, mouth"):
        annotation_union(tmp_path, 3, ("skin", "mouth"))
    write_part(tmp_path, 2, "l_eye", np.zeros((8, 4), bool))
    with pytest.raises(ImageError, match="00002_l_eye.png is 4x8, others are 8x8"):
        annotation_union(tmp_path, 2, ("nose", "l_eye"))


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
    summary = iou_summary(both, "bisenet")
    assert summary["images"] == 4 and summary["without_annotations"] == 0
    assert summary["mean"] == pytest.approx(truth["beta"].mean())
    assert iou_summary(truth, None, "no weights") == "unavailable: no weights"
    assert iou_summary(truth, "bisenet").startswith("unavailable: no image has both a bisenet mask and")


def test_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12) and iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 1.0


def test_masks_stage_reports_the_iou_or_why_not(demo_project, random_bisenet_weights, monkeypatch):
    monkeypatch.chdir(demo_project)
    root = demo_project / "data/demo"
    masks_stage.run(root, cfg(), out=Path("m.parquet"), metrics=Path("m.json"), progress=False)
    saved = json.loads(Path("m.json").read_text())
    assert saved["iou_parser_vs_annotations"].startswith("unavailable: no automatic mask back-end ran")
    assert saved["parser"] is None
    c = cfg(backend="bisenet", bisenet_weights=str(random_bisenet_weights), max_unusable_fraction=1.0)
    df = masks_stage.run(root, c, out=Path("b.parquet"), metrics=Path("b.json"), progress=False)
    saved = json.loads(Path("b.json").read_text())
    assert saved["backend"] == "bisenet" and saved["iou_parser_vs_annotations"]["images"] == len(df) > 0
    assert saved["parser"] == "bisenet"
    assert df["iou_annotations"].between(0, 1).all()


# ------------------------------------------------------------------------------------ real fixture


def test_annotations_on_real_fixture(fixture_root):
    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    df, report = compute_masks(fixture_root, ids, cfg(resolution=512, workers=2, batch_size=16), progress=False)
    assert len(df) == 200 and report.unusable == [] and df["id"].tolist() == ids
    assert df["beta"].between(0.05, 0.8).all(), df["beta"].describe()
    m = decode_png(df.iloc[0]["mask"])
    assert m.shape == (512, 512) and decode_png(df.iloc[0]["latent"]).shape == (64, 64)


# ------------------------------------------------------------------------------------ MediaPipe mesh


@pytest.fixture(scope="module")
def mesh_masker():
    """The mesh back-end's MeshMasker; skipped (with the reason) where its model files are absent: a test never
    fetches them (`facepaint models` does)."""
    if not mediapipe.available():
        pytest.skip(f"MediaPipe face model files absent from {mediapipe.default_dir()} (run `facepaint models`)")
    return mediapipe.MeshMasker(download=False)


def test_mesh_backend_on_real_fixture(fixture_root, mesh_masker, tmp_path, monkeypatch):
    """On real portraits the stage's mesh masks are MeshMasker's (on the image decoded as for BiSeNet) at the
    training resolution, close to the annotated face (IoU > 0.7 on average), and the metrics name the mesh."""
    monkeypatch.chdir(tmp_path)  # the stage writes its report under data/reports of the working directory
    from facepaint.common.images import load_rgb
    from facepaint.common.io import write_parquet

    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:10]
    write_parquet(pd.DataFrame({"id": ids, "split": "train", "present": True}), tmp_path / "split.parquet")
    c = cfg(backend="mesh", resolution=128, max_unusable_fraction=0.0)
    out, metrics = tmp_path / "masks.parquet", tmp_path / "metrics.json"
    df = masks_stage.run(fixture_root, c, split=tmp_path / "split.parquet", out=out, metrics=metrics, progress=False)
    assert df["id"].tolist() == ids
    assert np.isfinite(df["iou_annotations"]).all() and df["iou_annotations"].between(0, 1).all()
    assert df["iou_annotations"].mean() > 0.7, df["iou_annotations"].describe()
    for row in df.itertuples():
        m = decode_png(row.mask)
        assert m.shape == (128, 128) and decode_png(row.latent).shape == (16, 16)
        assert m.mean() == pytest.approx(row.beta) and 0.1 < row.beta < 0.8
    pixels = np.asarray(load_rgb(celebamask.image_path(fixture_root, ids[0])).image.resize((512, 512)))
    assert np.array_equal(decode_png(df.iloc[0]["mask"]), mesh_masker.mask(pixels, 128))  # M is the mesh's
    saved = json.loads(metrics.read_text())
    assert saved["backend"] == "mesh" and saved["parser"] == "mediapipe-facemesh"
    iou_stats = saved["iou_parser_vs_annotations"]
    assert iou_stats["images"] == 10 and iou_stats["mean"] == pytest.approx(df["iou_annotations"].mean())
    meta = read_parquet_metadata(out)["masks"]
    assert meta["backend"] == "mesh" and meta["mesh_files"] == mediapipe.FILES


def gray_dataset(root, ids):
    """A tiny CelebAMask-HQ layout whose photos are flat gray (no face), each with a skin annotation."""
    for i in ids:
        path = celebamask.image_path(root, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (128, 128), (128, 128, 128)).save(path)
        skin = np.zeros((64, 64), bool)
        skin[16:48, 16:48] = True
        write_part(root, i, "skin", skin)
    return root


def test_mesh_backend_reports_a_photo_without_a_face(tmp_path, mesh_masker):
    """No face found: unusable with the reason under the mesh backend; under the annotations backend (the mesh
    run for the IoU only) the image keeps its annotated M, noted, without an IoU."""
    root = gray_dataset(tmp_path / "data", [0, 1])
    df, report = compute_masks(root, [0, 1], cfg(backend="mesh"), progress=False, parser=mesh_masker)
    assert df.empty and [(p.id, p.reason) for p in report.unusable] == [(0, NO_FACE), (1, NO_FACE)]
    assert NO_FACE == "no face found by the MediaPipe detector"
    df, report = compute_masks(root, [0], cfg(), progress=False, parser=mesh_masker)
    assert df["id"].tolist() == [0] and df["iou_annotations"].isna().all() and report.unusable == []
    assert [p.reason for p in report.warnings] == [f"{NO_FACE}: no iou_annotations"]
    assert iou_summary(df, "mediapipe-facemesh").startswith("unavailable: no image has both a mediapipe-facemesh")
    with pytest.raises(TypeError, match="masks.backend mesh takes M from a MeshMasker, got a BiSeNetParser"):
        compute_masks(root, [0], cfg(backend="mesh"), progress=False, parser=object.__new__(BiSeNetParser))


def test_mesh_backend_without_model_files_fails_before_reading_images(tmp_path, monkeypatch):
    """Missing model files (and pip unable to fetch them) fail at once with mediapipe's ModelLoadError, which
    says how to supply them, before any image is decoded."""
    import subprocess

    from facepaint.data import masks as masks_module

    empty = tmp_path / "models"
    monkeypatch.setenv(mediapipe.ENV_DIR, str(empty))
    monkeypatch.setattr(
        mediapipe.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "no network")
    )

    def no_decoding(*a, **kw):
        raise AssertionError("an image was read before the model files were checked")

    monkeypatch.setattr(masks_module, "load_rgb", no_decoding)
    root = gray_dataset(tmp_path / "data", [0])
    with pytest.raises(
        ModelLoadError, match=rf"MediaPipe face models are not in {re.escape(str(empty))}.*facepaint models"
    ):
        compute_masks(root, [0], cfg(backend="mesh"), progress=False)
