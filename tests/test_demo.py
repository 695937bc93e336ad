"""The demo generator: CelebAMask-HQ layout, determinism, masks that match the drawing, and
attributes that match the masks."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from facepaint.celebamask import (
    ATTRIBUTE_FILE, ATTRIBUTES, FACE_PARTS, IMAGE_DIR, MASK_DIR, PART_NAMES, image_path, part_mask_path,
    read_attributes,
)
from facepaint.demo import LABELS, DemoConfig, generate, reduce_labels, render

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


def load_masks(root: Path, image_id: int) -> dict[str, np.ndarray]:
    """The part masks present for one image, as boolean arrays."""
    out = {}
    for part in PART_NAMES:
        path = part_mask_path(root, image_id, part)
        if path.exists():
            out[part] = np.asarray(Image.open(path)) > 127
    return out


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(ys.mean()), float(xs.mean())


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo60(tmp_path_factory):
    """60 portraits (the params.yaml count) at a test-friendly size; attributes do not depend on size."""
    root = tmp_path_factory.mktemp("demo60")
    table = generate(root, DemoConfig(n_images=60, size=128, mask_size=64, seed=0), progress=False)
    return root, table


# ----------------------------------------------------------------------------- layout

def test_layout_names_and_sizes(tmp_path):
    cfg = DemoConfig(n_images=6)  # the default sizes: 256 px images, 128 px masks
    generate(tmp_path, cfg, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([IMAGE_DIR, MASK_DIR, ATTRIBUTE_FILE])
    assert sorted(p.name for p in (tmp_path / IMAGE_DIR).iterdir()) == sorted(f"{i}.jpg" for i in range(6))
    assert [p.name for p in (tmp_path / MASK_DIR).iterdir()] == ["0"]
    pattern = re.compile(r"^(\d{5})_(%s)\.png$" % "|".join(PART_NAMES))
    names = [p.name for p in (tmp_path / MASK_DIR / "0").iterdir()]
    assert names and all(pattern.match(n) for n in names), [n for n in names if not pattern.match(n)]
    assert {int(pattern.match(n).group(1)) for n in names} == set(range(6))
    for i in range(6):
        with Image.open(image_path(tmp_path, i)) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (256, 256))
        for part in ("skin", "nose", "u_lip", "l_lip", "neck"):  # always drawn and visible
            assert part_mask_path(tmp_path, i, part).is_file(), (i, part)
        for part in PART_NAMES:
            path = part_mask_path(tmp_path, i, part)
            if path.exists():
                with Image.open(path) as m:
                    assert (m.format, m.mode, m.size) == ("PNG", "L", (128, 128)), path


def test_attribute_file_format_and_reader(tmp_path):
    table = generate(tmp_path, DemoConfig(n_images=7, size=96, mask_size=48), progress=False)
    lines = (tmp_path / ATTRIBUTE_FILE).read_text().splitlines()
    assert lines[0] == "7"
    assert lines[1] == " ".join(ATTRIBUTES)
    assert len(lines) == 9
    for i, line in enumerate(lines[2:]):
        assert line.startswith(f"{i}.jpg  ") and not line.startswith(f"{i}.jpg   "), line
        values = line.split()[1:]
        assert len(values) == 40 and set(values) <= {"-1", "1"}, line
    parsed = read_attributes(tmp_path / ATTRIBUTE_FILE)
    assert parsed.problems == [] and parsed.warnings == []
    assert len(parsed.table) == 7
    pd.testing.assert_frame_equal(parsed.table, table)
    assert table.index.name == "id" and table.index.dtype == np.int64
    assert list(table.columns) == list(ATTRIBUTES) and (table.dtypes == np.int8).all()


def test_config_is_validated():
    for bad in (dict(n_images=0), dict(size=16), dict(mask_size=4), dict(jpeg_quality=101), dict(seed=-1),
                dict(size="256"), dict(n_images=2.5), dict(size=True)):
        with pytest.raises(ValueError):
            DemoConfig(**bad)


# ----------------------------------------------------------------------------- determinism

def test_same_config_gives_identical_files(tmp_path):
    cfg = DemoConfig(n_images=5, size=128, mask_size=64, seed=3)
    generate(tmp_path / "a", cfg, progress=False)
    generate(tmp_path / "b", cfg, progress=True)  # the progress bar changes nothing
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert len(a) > 5 * 10
    assert a == b


def test_image_does_not_depend_on_n_images(tmp_path):
    generate(tmp_path / "small", DemoConfig(n_images=5, size=128, mask_size=64), progress=False)
    big = generate(tmp_path / "big", DemoConfig(n_images=8, size=128, mask_size=64), progress=False)
    small, large = all_files(tmp_path / "small"), all_files(tmp_path / "big")
    shared = {k: v for k, v in small.items() if k != ATTRIBUTE_FILE}
    assert shared and all(large[k] == v for k, v in shared.items())
    extra = set(large) - set(small)
    assert any(k.startswith(IMAGE_DIR) for k in extra)  # images 5..7 are new
    rows_small = (tmp_path / "small" / ATTRIBUTE_FILE).read_text().splitlines()[2:]
    rows_big = (tmp_path / "big" / ATTRIBUTE_FILE).read_text().splitlines()[2:]
    assert rows_big[:5] == rows_small and len(big) == 8


def test_seeds_differ(tmp_path):
    generate(tmp_path / "s0", DemoConfig(n_images=3, size=96, mask_size=48, seed=0), progress=False)
    generate(tmp_path / "s1", DemoConfig(n_images=3, size=96, mask_size=48, seed=1), progress=False)
    for i in range(3):
        assert image_path(tmp_path / "s0", i).read_bytes() != image_path(tmp_path / "s1", i).read_bytes()


def test_regenerating_in_place_removes_stale_masks(tmp_path):
    cfg0 = DemoConfig(n_images=12, size=96, mask_size=48, seed=0)
    cfg1 = DemoConfig(n_images=12, size=96, mask_size=48, seed=1)
    generate(tmp_path / "x", cfg0, progress=False)
    generate(tmp_path / "x", cfg1, progress=False)
    generate(tmp_path / "fresh", cfg1, progress=False)
    assert all_files(tmp_path / "x") == all_files(tmp_path / "fresh")


def test_written_masks_are_the_rendered_label_map(tmp_path):
    cfg = DemoConfig(n_images=3, size=128, mask_size=64, seed=2)
    generate(tmp_path, cfg, progress=False)
    for i in range(3):
        portrait = render(i, cfg.seed, cfg.size)
        labels = reduce_labels(portrait.labels, cfg.mask_size)
        masks = load_masks(tmp_path, i)
        assert set(masks) == {p for p, k in LABELS.items() if (labels == k).any()}
        for part, mask in masks.items():
            np.testing.assert_array_equal(mask, labels == LABELS[part], err_msg=part)


def test_reduce_labels_keeps_small_parts():
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 10:50] = LABELS["skin"]
    labels[20, 20:30] = LABELS["eye_g"]  # a 1-pixel line, under half of every 4x4 block
    out = reduce_labels(labels, 16)
    assert (out == LABELS["eye_g"]).sum() == 1
    assert (out == LABELS["skin"]).sum() > 50
    assert set(np.unique(out)) == {0, LABELS["skin"], LABELS["eye_g"]}


# ----------------------------------------------------------------------------- masks match the drawing

def test_masks_are_binary_and_disjoint(demo60):
    root, table = demo60
    for i in table.index:
        total = np.zeros((64, 64), np.int32)
        for part in PART_NAMES:
            path = part_mask_path(root, i, part)
            if path.exists():
                values = np.unique(np.asarray(Image.open(path)))
                assert set(values.tolist()) <= {0, 255} and 255 in values, (i, part, values)
                total += np.asarray(Image.open(path)) > 127
        assert total.max() == 1, i  # every pixel belongs to at most one part, as in CelebAMask-HQ


def test_face_union_is_a_plausible_centred_face(demo60):
    root, table = demo60
    for i in table.index:
        masks = load_masks(root, i)
        face = np.zeros((64, 64), bool)
        for part in FACE_PARTS:
            face |= masks.get(part, False)
        assert 0.05 < face.mean() < 0.6, (i, face.mean())
        y, x = centroid(face)
        assert 0.35 * 64 < x < 0.65 * 64 and 0.35 * 64 < y < 0.7 * 64, (i, x, y)
        # one face: glasses frames may enclose skin, their temples may cut off slivers
        solid = ndimage.binary_fill_holes(face | masks.get("eye_g", False))
        parts, n = ndimage.label(solid)
        assert np.bincount(parts.ravel())[1:].max() >= 0.9 * solid.sum(), (i, n)


def test_part_geometry(demo60):
    root, table = demo60
    n_with_eyes = 0
    for i in table.index:
        m = load_masks(root, i)
        head = m["skin"].copy()
        for part in FACE_PARTS:
            head |= m.get(part, False)
        ys, xs = np.nonzero(head)
        mouth_y = centroid(m["u_lip"] | m["l_lip"])[0]
        assert centroid(m["u_lip"])[0] < centroid(m["l_lip"])[0], i
        assert centroid(m["nose"])[0] < mouth_y, i
        for side in ("l", "r"):
            eye = m.get(f"{side}_eye")
            if eye is None:
                assert table.loc[i, "Eyeglasses"] == 1, (i, "eyes may only be hidden by sunglasses")
                continue
            ey, ex = centroid(eye)
            assert xs.min() <= ex <= xs.max() and ys.min() <= ey <= ys.max(), (i, side)
            assert ey < centroid(m["nose"])[0] < mouth_y, (i, side)
            if f"{side}_brow" in m:
                assert centroid(m[f"{side}_brow"])[0] < ey, (i, side)
        if "l_eye" in m and "r_eye" in m:
            n_with_eyes += 1
            # 'l_' is the person's left: on the image's right, as in the real annotations
            assert centroid(m["l_eye"])[1] > centroid(m["r_eye"])[1], i
            assert centroid(m["l_brow"])[1] > centroid(m["r_brow"])[1], i
        if "l_ear" in m and "r_ear" in m:
            assert centroid(m["l_ear"])[1] > centroid(m["r_ear"])[1], i
    assert n_with_eyes >= 40


def _core(mask: np.ndarray) -> np.ndarray:
    """The mask away from its (blurred) edges, unless that leaves too little of it."""
    eroded = ndimage.binary_erosion(mask)
    return eroded if eroded.sum() >= 6 else mask


def _mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median: robust to beards and make-up on the skin, and to highlights."""
    return np.median(image[mask].astype(float), axis=0)


def test_labelled_pixels_have_the_drawn_colours(demo60):
    root, table = demo60
    compared = 0
    for i in table.index:
        image = np.asarray(Image.open(image_path(root, i)).convert("RGB").resize((64, 64), Image.Resampling.BOX))
        m = {p: _core(v) for p, v in load_masks(root, i).items()}
        upper = np.arange(64)[:, None] < centroid(m["nose"])[0]  # above any beard, stubble or blush
        skin = _mean_colour(image, m["skin"] & upper)
        nose = _mean_colour(image, m["nose"])
        neck = _mean_colour(image, m["neck"])
        chroma = lambda c: c / max(c.sum(), 1.0)  # noqa: E731  (the neck is shaded darker: compare hues)
        assert np.linalg.norm(skin - nose) < 45, (i, skin, nose)
        assert np.abs(chroma(skin) - chroma(neck)).max() < 0.05, (i, skin, neck)
        if m.get("hair") is not None and m["hair"].sum() >= 30:
            hair = _mean_colour(image, m["hair"])
            assert np.linalg.norm(skin - hair) > 25, (i, skin, hair)
            compared += 1
        background = ~ndimage.binary_dilation(np.any(np.stack(list(load_masks(root, i).values())), 0), iterations=2)
        if background.sum() > 50:  # the unlabelled background is not skin-coloured where it is plain
            bg = image[background].astype(float)
            if bg.std(axis=0).max() < 10:
                assert np.linalg.norm(bg.mean(axis=0) - skin) > 10, i
    assert compared >= 40


def test_features_sit_in_holes_of_the_skin(demo60):
    root, table = demo60
    for i in table.index:
        m = load_masks(root, i)
        for part in ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "mouth"):
            if part in m:  # not in the skin mask, but enclosed by the face (as in CelebAMask-HQ)
                assert not (m["skin"] & m[part]).any(), (i, part)
                others = np.any(np.stack([v for p, v in m.items() if p != part]), axis=0)
                enclosed = ndimage.binary_fill_holes(others) & ~others
                assert (enclosed & m[part]).sum() >= 0.9 * m[part].sum(), (i, part)


# ----------------------------------------------------------------------------- attributes match the masks

def test_attributes_consistent_with_masks(demo60):
    root, table = demo60
    for i, row in table.iterrows():
        m = load_masks(root, i)
        assert (row["Eyeglasses"] == 1) == ("eye_g" in m), i
        assert (row["Wearing_Hat"] == 1) == ("hat" in m), i
        assert (row["Wearing_Earrings"] == 1) == ("ear_r" in m), i
        assert (row["Wearing_Necklace"] == 1) == ("neck_l" in m), i
        assert (row["Mouth_Slightly_Open"] == 1) == ("mouth" in m), i
        assert (row["Bald"] == 1) == ("hair" not in m), i
        colours = sum(row[c] == 1 for c in HAIR_COLOURS)
        assert colours <= 1, i
        if row["Bald"] == 1:
            assert colours == 0 and row["Bangs"] == -1 and row["Wavy_Hair"] == -1 and row["Straight_Hair"] == -1, i
        else:
            assert (row["Wavy_Hair"] == 1) != (row["Straight_Hair"] == 1), i
        if row["No_Beard"] == -1 or row["Mustache"] == 1 or row["Goatee"] == 1 or row["5_o_Clock_Shadow"] == 1:
            assert row["Male"] == 1, i
        if row["Mustache"] == 1 or row["Goatee"] == 1:
            assert row["No_Beard"] == -1, i
        if row["Gray_Hair"] == 1:
            assert row["Young"] == -1, i
        if row["Heavy_Makeup"] == 1:
            assert row["Wearing_Lipstick"] == 1, i
    undrawn = ["Attractive", "Bags_Under_Eyes", "Chubby", "Double_Chin", "High_Cheekbones", "Oval_Face", "Pointy_Nose"]
    assert (table[undrawn] == -1).all().all()


def test_attribute_coverage(demo60):
    _, table = demo60
    for name in ("Smiling", "Eyeglasses", "Male", "Blond_Hair", "Black_Hair", "Brown_Hair", "Mustache", "No_Beard",
                 "Wearing_Hat", "Bangs", "Wavy_Hair", "Wearing_Lipstick", "Mouth_Slightly_Open", "Young",
                 "Wearing_Earrings", "Bald"):
        counts = table[name].value_counts()
        assert counts.get(1, 0) >= 1 and counts.get(-1, 0) >= 1, (name, counts.to_dict())
    assert 0.25 <= (table["Eyeglasses"] == 1).mean() <= 0.55
    assert 0.3 <= (table["Smiling"] == 1).mean() <= 0.7
    assert 0.3 <= (table["Male"] == 1).mean() <= 0.7


# ----------------------------------------------------------------------------- the real data has these conventions

def conventions(root: Path, ids) -> dict[str, float]:
    l_right, overlaps, skin_over_features = [], 0, 0
    for i in ids:
        m = load_masks(root, i)
        if "l_eye" in m and "r_eye" in m:
            l_right.append(centroid(m["l_eye"])[1] > centroid(m["r_eye"])[1])
        overlaps += int(np.sum(np.stack(list(m.values())), axis=0).max() > 1)
        for part in ("nose", "l_eye", "r_eye", "u_lip", "l_lip"):
            if part in m:
                skin_over_features += int((m["skin"] & m[part]).sum())
    return {"l_eye_on_image_right": float(np.mean(l_right)), "overlapping": overlaps,
            "skin_over_features": skin_over_features}


@pytest.mark.fixture
def test_demo_follows_the_real_annotation_conventions(fixture_root, demo_root):
    real_ids = [int(s) for s in (fixture_root / "ids.txt").read_text().split()][:30]
    real = conventions(fixture_root, real_ids)
    demo = conventions(demo_root, range(12))
    assert real["l_eye_on_image_right"] > 0.9 and demo["l_eye_on_image_right"] == 1.0
    assert real["overlapping"] == 0 and demo["overlapping"] == 0
    assert real["skin_over_features"] == 0 and demo["skin_over_features"] == 0
