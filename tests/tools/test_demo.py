"""tools/demo.py: the CelebAMask-HQ layout, determinism, masks that follow the drawing and the real
masks' conventions, and attributes that are consistent, varied and described by the captions."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from facepaint.data.captions import caption_candidates
from facepaint.data.celebamask import (
    ATTRIBUTE_FILE,
    ATTRIBUTES,
    IMAGE_DIR,
    MASK_DIR,
    PART_NAMES,
    image_path,
    part_mask_path,
    read_attributes,
)
from facepaint.data.masks import MaskConfig
from tests.helpers import config
from tools.demo import LABELS, DemoConfig, generate, reduce_labels, render

FACE_PARTS = config("masks", MaskConfig).parts  # the face of params.yaml

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
DRAWN = HAIR_COLOURS + (
    "Male",
    "Bald",
    "Smiling",
    "Eyeglasses",
    "No_Beard",
    "Mustache",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Heavy_Makeup",
    "Wearing_Earrings",
    "Young",
    "Pale_Skin",
)
# the attribute each optional part is drawn for: its mask file exists iff the attribute is +1
PART_OF = {"eye_g": "Eyeglasses", "hat": "Wearing_Hat", "ear_r": "Wearing_Earrings", "mouth": "Smiling"}


def masks(root: Path, image_id: int) -> dict[str, np.ndarray]:
    return {
        p: np.asarray(Image.open(f)) > 127 for p in PART_NAMES if (f := part_mask_path(root, image_id, p)).exists()
    }


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo60(tmp_path_factory):
    """60 portraits with seed 0, as params.yaml, at a test-friendly size (attributes do not depend on it)."""
    root = tmp_path_factory.mktemp("demo60")
    return root, generate(root, DemoConfig(n_images=60, size=128, mask_size=64, seed=0), progress=False)


def test_layout_file_names_and_formats(tmp_path):
    generate(tmp_path, DemoConfig(n_images=3, size=100, mask_size=37, seed=0), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([IMAGE_DIR, MASK_DIR, ATTRIBUTE_FILE])
    assert sorted(p.name for p in (tmp_path / IMAGE_DIR).iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert [p.name for p in (tmp_path / MASK_DIR).iterdir()] == ["0"]  # folder id // 2000
    pattern = re.compile(rf"^0000[0-2]_({'|'.join(PART_NAMES)})\.png$")
    names = [p.name for p in (tmp_path / MASK_DIR / "0").iterdir()]
    assert names and all(pattern.match(n) for n in names), names
    for i in range(3):
        with Image.open(image_path(tmp_path, i)) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (100, 100))
        for part in ("skin", "hair" if part_mask_path(tmp_path, i, "hair").exists() else "neck"):
            with Image.open(part_mask_path(tmp_path, i, part)) as m:
                assert (m.format, m.mode, m.size) == ("PNG", "L", (37, 37))
                assert set(np.unique(np.asarray(m))) <= {0, 255}
    lines = (tmp_path / ATTRIBUTE_FILE).read_text().splitlines()
    assert lines[0] == "3" and lines[1].split() == list(ATTRIBUTES)
    assert re.fullmatch(r"1\.jpg  (-?1 ){39}-?1", lines[3])


def test_attribute_file_round_trips(demo60):
    root, table = demo60
    back = read_attributes(root / ATTRIBUTE_FILE)
    assert not back.problems and not back.warnings
    assert table.index.name == "id" and table.index.dtype == "int64" and set(table.dtypes) == {np.dtype("int8")}
    assert back.table.equals(table)


def test_deterministic_extends_and_depends_on_seed(tmp_path):
    cfg = {"size": 64, "mask_size": 32}
    for name, n, seed in (("a", 5, 0), ("b", 5, 0), ("c", 8, 0), ("d", 5, 1)):
        generate(tmp_path / name, DemoConfig(n_images=n, seed=seed, **cfg), progress=False)
    a, b, c, d = (files(tmp_path / name) for name in "abcd")
    assert a == b
    attr_a, attr_c = a.pop(ATTRIBUTE_FILE), c.pop(ATTRIBUTE_FILE)  # the count line differs
    assert a.items() <= c.items() and len(c) > len(a)
    assert attr_c.decode().splitlines()[1:7] == attr_a.decode().splitlines()[1:]
    assert all(d[f"{IMAGE_DIR}/{i}.jpg"] != a[f"{IMAGE_DIR}/{i}.jpg"] for i in range(5))
    assert all(render(i, 0, 64).attributes == render(i, 0, 200).attributes for i in range(5))  # size-free


def test_regenerating_in_place_removes_stale_masks(tmp_path):
    generate(tmp_path / "x", DemoConfig(n_images=6, size=64, mask_size=32, seed=0), progress=False)
    generate(tmp_path / "x", DemoConfig(n_images=6, size=64, mask_size=32, seed=1), progress=False)
    generate(tmp_path / "fresh", DemoConfig(n_images=6, size=64, mask_size=32, seed=1), progress=False)
    assert files(tmp_path / "x") == files(tmp_path / "fresh")


def test_masks_do_not_overlap_and_match_the_label_map(demo60):
    root, _ = demo60
    for i in range(10):
        m = masks(root, i)
        assert sum(v.astype(int) for v in m.values()).max() == 1  # disjoint (and every part's file is used)
        labels = reduce_labels(render(i, 0, 128).labels, 64)
        for part, k in LABELS.items():
            assert np.array_equal(m.get(part, np.zeros((64, 64), bool)), labels == k), (i, part)


def test_person_left_parts_lie_on_the_image_right(demo60):
    root, _ = demo60
    for i in range(10):
        m = masks(root, i)
        for part in ("eye", "brow", "ear"):
            assert np.nonzero(m[f"l_{part}"])[1].mean() > 32 > np.nonzero(m[f"r_{part}"])[1].mean(), (i, part)


def test_skin_has_holes_at_the_features():
    for i in range(6):
        labels = render(i, 0, 128).labels
        skin = labels == LABELS["skin"]
        # the glasses' temples reach the head's edge, so the features are holes of skin plus frames
        filled = ndimage.binary_fill_holes(skin | (labels == LABELS["eye_g"]))
        for part in ("l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip"):
            feature = labels == LABELS[part]
            if part != "mouth" or feature.any():
                assert feature.any() and not (feature & skin).any()
                assert (feature & filled).mean() / feature.mean() > 0.95, (i, part)


def test_optional_parts_have_a_file_iff_their_attribute(demo60):
    root, table = demo60
    for i, row in table.iterrows():
        for part, attribute in PART_OF.items():
            assert part_mask_path(root, i, part).exists() == (row[attribute] == 1), (i, part)
        assert part_mask_path(root, i, "hair").exists() == (row["Bald"] == -1), i
        for part in ("skin", "l_eye", "r_eye", "l_brow", "r_brow", "nose", "u_lip", "l_lip", "neck", "cloth"):
            assert part_mask_path(root, i, part).exists(), (i, part)


def test_attributes_are_consistent(demo60):
    _, table = demo60
    assert (table[[a for a in ATTRIBUTES if a not in DRAWN]] == -1).all().all()  # Attractive too
    hair = (table[list(HAIR_COLOURS)] == 1).sum(axis=1)
    bald, male = table["Bald"] == 1, table["Male"] == 1
    assert (hair[bald] == 0).all() and (hair[~bald] == 1).all()
    assert not (bald & ~male).any()
    assert not ((table["No_Beard"] == -1) & ~male).any() and not ((table["Mustache"] == 1) & ~male).any()
    assert not ((table["Heavy_Makeup"] == 1) & (table["Wearing_Lipstick"] == -1)).any()
    assert not ((table["Wearing_Hat"] == 1) & bald).any()


def test_beard_is_painted_over_the_skin_and_stays_skin():
    """Below the lower lip a beard is stubble (textured colour) on pixels still labelled skin, and it
    does not spill over the parts in front of the skin (the lips stay plain)."""
    for i in range(30):
        p = render(i, 0, 256)
        rgb = np.asarray(p.image, dtype=float)
        below = slice(np.nonzero(p.labels == LABELS["l_lip"])[0].max() + 3, None)
        chin = (p.labels == LABELS["skin"])[below][:12]
        texture = rgb[below][:12][chin].std(axis=0).mean()
        assert chin.sum() > 600, i  # the chin is skin with or without a beard
        assert (texture > 8) == (p.attributes["No_Beard"] == -1), (i, texture)
        lip = ndimage.binary_erosion(p.labels == LABELS["l_lip"])  # away from the blurred edge
        assert lip.sum() > 30 and rgb[lip].std(axis=0).mean() < 3, i


def test_salient_attributes_vary_and_faces_are_plausibly_sized(demo60):
    root, table = demo60
    for name in DRAWN:
        assert 3 <= (table[name] == 1).sum() <= 57, name
    for i in table.index:
        m = masks(root, i)
        face = np.logical_or.reduce([m[p] for p in FACE_PARTS if p in m])
        assert 0.10 <= face.mean() <= 0.50, (i, face.mean())


def test_captions_describe_the_drawing(demo60):
    _, table = demo60
    words = {
        "Black_Hair": "black",
        "Blond_Hair": "blond",
        "Brown_Hair": "brown",
        "Gray_Hair": ("gray", "grey"),
        "Eyeglasses": "glasses",
    }
    checked = 0
    for i, row in table.head(12).iterrows():
        text = " ".join(caption_candidates(row.to_dict(), int(i), n=10, seed=42))
        for attribute, word in words.items():
            if row[attribute] == 1:
                assert any(w in text for w in np.atleast_1d(word)), (i, attribute, text)
                checked += 1
    assert checked >= 10


def test_config_validation_and_no_defaults():
    with pytest.raises(TypeError):
        DemoConfig()
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(DemoConfig))
    good = {"n_images": 1, "size": 64, "mask_size": 16, "seed": 0}
    DemoConfig(**good)
    DemoConfig(**{**good, "mask_size": 64, "n_images": np.int64(3)})
    for name, value in (
        ("n_images", 0),
        ("size", 63),
        ("mask_size", 15),
        ("mask_size", 65),
        ("seed", -1),
        ("n_images", True),
        ("n_images", 2.0),
        ("seed", "0"),
    ):
        with pytest.raises(ValueError, match=f"demo.{name} must be"):
            DemoConfig(**{**good, name: value})


def test_reduce_labels_majority_and_tiny_parts():
    labels = np.zeros((64, 64), np.uint8)
    labels[:, 32:] = LABELS["skin"]
    labels[0:44, 0:36] = LABELS["hair"]  # over skin and background; blocks are 16 x 16
    labels[48:64, 16:24] = LABELS["hair"]  # half of block (3, 1): a tie with the background
    labels[50:52, 10:12] = LABELS["ear_r"]  # 4 of block (3, 0)'s 256 pixels: lost to the majority
    out = reduce_labels(labels, 4)
    assert out.dtype == np.uint8 and out.shape == (4, 4)
    assert out[0, 0] == out[2, 0] == LABELS["hair"]  # 12 of 16 rows beat the lower label (background)
    assert out[0, 2] == out[2, 2] == out[3, 3] == LABELS["skin"]  # skin is the majority there
    assert out[3, 1] == 0  # a tie goes to the lower label
    assert (out == LABELS["ear_r"]).sum() == 1 and out[3, 0] == LABELS["ear_r"]  # kept, where it is
    assert np.array_equal(reduce_labels(labels, 64), labels)
