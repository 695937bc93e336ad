"""facepaint.editing.editor on the tiny model at 64 px: the background guarantee (real photos: the public-domain
astronaut and the fixture's, and odd synthetic ones), the adapter, determinism, provenance, the per-edit options
(SamplingOptions, EditChoices), the BiSeNet path and bad input."""

import copy
import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from facepaint.common.images import ImageError, load_rgb
from facepaint.data.masks import annotation_union
from facepaint.editing import editor as editor_mod
from facepaint.editing import watermark as wm
from facepaint.editing.editor import EditChoices, FaceEditor, parse_edit_options, split_options
from facepaint.editing.provenance import read_provenance
from facepaint.method import generate as generate_mod
from facepaint.method.artifact import ArtifactError, load_artifact, save_artifact
from facepaint.method.blend import pixel_blend
from facepaint.method.detection import FaceError
from facepaint.method.face_helper import EditError, FaceHelper
from facepaint.method.generate import Inpainter
from facepaint.method.masks import BISENET_CLASSES, face_crop
from facepaint.method.models import ModelLoadError, tiny_components
from facepaint.method.options import SamplingOptions
from facepaint.method.speed import Speed
from tests.helpers import assert_close_images, box_mask, random_adapter, textured, tiny_conditions
from tests.method import astronaut

RES = 64
# sigma is in pixels of a 512 px face crop: 8.0 is the 1 px soft mask at the tiny model's 64 px that these tests
# were written for (the default 4.0 is 0.5 px there)
FAST = dict(steps=2, seed=0, sigma=8.0)


def make_editor(comps, adapter, where, speed=Speed(dtype="fp32"), **options) -> FaceEditor:
    """A FaceEditor on in-memory components: an artifact of them (the demo's conditions at 64 px) and an
    Inpainter on them."""
    art = load_artifact(save_artifact(where / "model", comps.unet, adapter, tiny_conditions(RES)).path)
    inpainter = Inpainter(comps, adapter, art.conditions.adapter_scale, RES, device="cpu", speed_options=speed)
    return FaceEditor(inpainter, art, **options)


@pytest.fixture(scope="module")
def comps():
    return tiny_components(seed=0)


@pytest.fixture(scope="module")
def editor(comps, tmp_path_factory):
    return make_editor(comps, random_adapter(comps), tmp_path_factory.mktemp("editor"))


def with_helper(editor, **helper) -> FaceEditor:
    """`editor`'s model with a FaceHelper of its own (e.g. other BiSeNet weights)."""
    c = editor.conditions
    return FaceEditor(
        editor.inpainter, editor.artifact, helper=FaceHelper(c.resolution, c.parts, device="cpu", **helper)
    )


def assert_background_kept(result, original):
    """Every pixel where M_soft == 0 is the input's; M_soft is 0 outside the region; the face changed."""
    assert result.image.shape == original.shape and result.image.dtype == np.uint8
    outside = result.soft == 0
    assert np.array_equal(result.image[outside], original[outside])
    x0, y0, x1, y1 = result.region
    in_region = np.zeros(outside.shape, bool)
    in_region[y0:y1, x0:x1] = True
    assert (result.soft[~in_region] == 0).all() and result.soft.max() <= 1
    assert (result.image[result.mask] != original[result.mask]).any()


# ------------------------------------------------------------------------------------ pure pieces


def test_pixel_blend_formula_and_exact_copy_where_soft_is_zero():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    res = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    soft = rng.random((8, 8)).astype(np.float32)
    soft[:, :3] = 0
    soft[0, 7] = 1
    out = pixel_blend(orig, res, soft)
    expected = np.rint(res * soft[..., None] + orig * (1 - soft[..., None]))
    assert np.abs(out.astype(float) - expected).max() <= 1  # float32 vs float64 rounding
    assert np.array_equal(out[:, :3], orig[:, :3]) and np.array_equal(out[0, 7], res[0, 7])


def test_face_crop_is_a_padded_square_inside_the_image():
    m = box_mask(200, 300, 50, 90, 100, 180)  # 80 wide, 40 high
    x0, y0, side = face_crop(m, 0.25)
    assert side == 120 and (x0, y0) == (80, 10)  # 80 * 1.5, centred on the box
    x0, y0, side = face_crop(box_mask(200, 300, 0, 30, 270, 300), 0.5)  # in a corner: shifted inside
    assert (x0, y0, side) == (300 - 60, 0, 60)
    x0, y0, side = face_crop(box_mask(100, 300, 10, 90, 50, 250), 0.25)  # wider than the photo is high
    assert side == 100 and y0 == 0 and 0 <= x0 <= 200


# ------------------------------------------------------------------------------ background guarantee


def _exif_rotated_jpeg(path):
    """A JPEG stored 150 wide x 97 high whose EXIF says: rotate 90 degrees clockwise to display."""
    stored = Image.fromarray(textured(97, 150, seed=3))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    return np.rot90(np.asarray(Image.open(path).convert("RGB")), k=-1)  # what a viewer shows


def _rgba_png(path):
    px = textured(120, 90, seed=4)
    alpha = np.full((120, 90), 255, np.uint8)
    alpha[:20] = 0  # a transparent band at the top: composited on white
    Image.fromarray(np.dstack([px, alpha]), "RGBA").save(path)
    return np.where(alpha[..., None] == 255, px, 255).astype(np.uint8)


def _grey_png(path):
    px = textured(150, 97, seed=5)[..., 0]
    Image.fromarray(px, "L").save(path)
    return np.repeat(px[..., None], 3, axis=2)


def _rgb_png(path):
    px = textured(457, 301, seed=6)
    Image.fromarray(px).save(path)
    return px


@pytest.mark.parametrize("make", [_rgb_png, _grey_png, _rgba_png, _exif_rotated_jpeg])
def test_background_is_bit_identical_on_odd_photos(editor, tmp_path, make):
    path = tmp_path / ("photo.jpg" if make is _exif_rotated_jpeg else "photo.png")
    expected = make(path)  # the photo as it should be seen, decoded independently of load_rgb
    h, w = expected.shape[:2]
    mask = box_mask(h, w, h // 3, h // 3 + h // 4, w // 4, w // 2)
    result = editor.edit(path, "a smiling face", mask=mask, **FAST)
    assert np.array_equal(result.original, expected)
    assert_background_kept(result, expected)
    assert result.provenance["region"] == list(result.region)


def test_array_input_and_no_blend_ablation(editor):
    photo = textured(97, 150, seed=1)
    mask = box_mask(97, 150, 30, 60, 60, 95)
    blended = editor.edit(photo, "a face", mask=mask, **FAST)
    assert_background_kept(blended, photo)
    raw = editor.edit(photo, "a face", mask=mask, blend=False, **FAST)
    x0, y0, x1, y1 = raw.region
    outside_region = np.ones((97, 150), bool)
    outside_region[y0:y1, x0:x1] = False
    assert np.array_equal(raw.image[outside_region], photo[outside_region])  # only the crop is pasted
    changed = (raw.image != photo).any(axis=2)
    assert (changed & (raw.soft == 0) & ~outside_region).any()  # the VAE touched background in the crop
    assert np.array_equal(raw.generated, blended.generated)


def test_watermark_stays_inside_the_face(editor):
    photo = textured(160, 130, seed=2)
    mask = box_mask(160, 130, 40, 110, 30, 100)
    plain = editor.edit(photo, "a face", mask=mask, **FAST)
    marked = editor.edit(photo, "a face", mask=mask, watermark=True, **FAST)
    assert_background_kept(marked, photo)
    diff = (marked.image != plain.image).any(axis=2)
    assert diff.any() and not (diff & ~mask).any()
    assert wm.detect(marked.image, mask) > wm.THRESHOLD
    assert wm.detect(plain.image, mask) < wm.THRESHOLD
    assert wm.detect(marked.image, mask, key="someone else") < wm.THRESHOLD
    assert marked.provenance["watermark"] is True and plain.provenance["watermark"] is False


def test_background_is_bit_identical_on_real_photos(editor, fixture_root):
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()[:3]]
    for image_id in ids:
        path = fixture_root / "CelebA-HQ-img" / f"{image_id}.jpg"
        original = np.asarray(load_rgb(path).image)
        mask, _ = annotation_union(fixture_root, image_id, editor.conditions.parts)
        result = editor.edit(path, "a smiling woman with blond hair", mask=mask, watermark=image_id == ids[0], **FAST)
        assert_background_kept(result, original)
        assert result.mask.shape == original.shape[:2] and np.array_equal(result.mask, mask)
    raw = editor.edit(path, "a smiling woman", mask=mask, blend=False, **FAST)
    x0, y0, x1, y1 = raw.region
    inside_crop = np.zeros(mask.shape, bool)
    inside_crop[y0:y1, x0:x1] = True
    assert ((raw.image != original).any(axis=2) & (raw.soft == 0) & inside_crop).any()


def test_background_is_bit_identical_on_the_astronaut(editor, tmp_path):
    """The public-domain portrait, read from a file, its face painted: found by the detector and aligned, and
    every pixel outside the soft mask kept, with the watermark on and off; without blending the model's crop
    visibly changes background pixels (what the blend is for)."""
    photo, mask = astronaut.photo(), astronaut.face_mask()
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    for watermark in (True, False):
        result = editor.edit(
            tmp_path / "astronaut.png", "a smiling woman with blond hair", mask=mask, watermark=watermark, **FAST
        )
        assert np.array_equal(result.original, photo)
        assert_background_kept(result, photo)
        assert np.array_equal(result.mask, mask)  # the user's mask, exactly
        assert [f.index for f in result.faces] == [0] and result.provenance["detector"] == "mediapipe-blazeface"
        assert result.provenance["watermark"] is watermark
    raw = editor.edit(tmp_path / "astronaut.png", "a smiling woman", mask=mask, blend=False, **FAST)
    x0, y0, x1, y1 = raw.region
    inside_crop = np.zeros(mask.shape, bool)
    inside_crop[y0:y1, x0:x1] = True
    assert ((raw.image != photo).any(axis=2) & (raw.soft == 0) & inside_crop).any()
    assert not ((raw.image != photo).any(axis=2) & ~inside_crop).any()


def test_a_face_wider_than_the_photo_is_high_is_edited_whole_in_one_square(editor):
    """The mask is the authority: a region wider than the photo is high goes through the model in one square
    that reaches past the photo's top and bottom (edges replicated), every masked pixel edited."""
    photo = textured(40, 200, seed=12)
    mask = box_mask(40, 200, 5, 35, 10, 190)
    with pytest.warns(UserWarning, match="is edited in its own crop"):
        result = editor.edit(photo, "a face", mask=mask, **FAST)
    assert np.array_equal(result.mask, mask) and (result.soft[mask] > 0).all()
    assert any("past the photo's edges" in n for n in result.notes)
    assert_background_kept(result, photo)


# ---------------------------------------------------------------------------- the model is used right


def test_adapter_is_applied_and_seed_makes_it_deterministic(editor, comps, monkeypatch, tmp_path):
    photo = textured(96, 96, seed=7)
    mask = box_mask(96, 96, 20, 70, 25, 75)
    a = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    again = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    assert np.array_equal(a.image, again.image)
    other_seed = editor.edit(photo, "a face with blond hair", mask=mask, steps=2, seed=1)
    assert not np.array_equal(a.generated, other_seed.generated)

    zeroed = copy.deepcopy(editor.inpainter.adapter)
    torch.nn.init.zeros_(zeroed.w2.weight)
    no_adapter = make_editor(comps, zeroed, tmp_path)
    b = no_adapter.edit(photo, "a face with blond hair", mask=mask, **FAST)
    assert not np.array_equal(a.generated, b.generated)

    calls = []
    real = generate_mod.condition
    monkeypatch.setattr(
        generate_mod, "condition", lambda e, beta, ad, s: calls.append((beta, ad, s)) or real(e, beta, ad, s)
    )
    c = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    # Both the prompt and the (empty) negative prompt go through the adapter, with the crop's beta and the
    # artifact's adapter_scale.
    scale = editor.conditions.adapter_scale
    assert len(calls) == 2 and all(call == (c.provenance["beta"], editor.inpainter.adapter, scale) for call in calls)
    assert 0 < c.provenance["beta"] < 1 and np.array_equal(c.image, a.image)


def test_from_artifact_matches_the_components_and_records_provenance(editor, comps, tmp_path):
    artifact = save_artifact(tmp_path / "model", comps.unet, editor.inpainter.adapter, tiny_conditions(RES))
    loaded = FaceEditor.from_artifact(tmp_path / "model", device="cpu", speed_options=Speed(dtype="fp16"))
    assert not hasattr(artifact.conditions, "sigma")  # the soft mask's sigma is an option of each edit
    photo = textured(80, 120, seed=8)
    mask = box_mask(80, 120, 20, 60, 40, 80)
    result = loaded.edit(photo, "a face", mask=mask, negative_prompt="blurry", guidance_scale=5.0, **FAST)
    assert np.array_equal(
        result.image,
        editor.edit(photo, "a face", mask=mask, negative_prompt="blurry", guidance_scale=5.0, **FAST).image,
    )
    out = result.save(tmp_path / "out" / "edited.png")
    prov = read_provenance(out)
    assert prov == result.provenance
    assert prov["artifact_version"] == artifact.version and prov["model"] == "tiny-random(seed=0)"
    assert prov["prompt"] == "a face" and prov["negative_prompt"] == "blurry" and prov["seed"] == 0
    assert prov["guidance_scale"] == 5.0 and prov["steps"] == 2 and prov["blend"] is True
    assert prov["region"] == list(result.region) and prov["artifact_path"] == str(tmp_path / "model")
    assert prov["sigma"] == 8.0 and prov["scheduler"] == "ddim" and prov["strength"] == 1.0
    assert prov["adapter_scale"] == 0.3 and prov["resolution"] == RES
    assert prov["parts"] == list(artifact.conditions.parts) and prov["padding"] == 0.25
    assert np.array_equal(np.asarray(Image.open(out)), result.image)
    Image.fromarray(photo).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no facepaint provenance"):
        read_provenance(tmp_path / "plain.png")


def test_missing_or_invalid_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        FaceEditor.from_artifact(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="lacks"):
        FaceEditor.from_artifact(tmp_path / "empty")


# ----------------------------------------------------------------------------------------- BiSeNet


@pytest.fixture(params=["astronaut", pytest.param("celeba", marks=pytest.mark.fixture)])
def portrait(request):
    """A real portrait: the public-domain astronaut (always), a fixture photo (where the fixture is)."""
    if request.param == "astronaut":
        return astronaut.photo()
    root = request.getfixturevalue("fixture_root")
    return np.asarray(load_rgb(root / "CelebA-HQ-img" / "10167.jpg").image)


def test_bisenet_finds_the_face_when_no_mask_is_given(editor, random_bisenet_weights, portrait):
    """No mask: the detector finds the face of a real portrait, the parser labels its aligned crop."""
    ed = with_helper(editor, bisenet_weights=random_bisenet_weights)
    photo = portrait
    # Random weights label pixels arbitrarily: the flow must give a full-size mask or the clear error.
    try:
        assert ed.helper.photo_mask(ed.helper.prepare(photo)).shape == photo.shape[:2]
        ed.edit(photo, "a face", **FAST)
    except EditError as e:
        assert "no face to edit in <array>" in str(e) and "parser found no face parts" in str(e)

    def skin_in_a_box(batch):  # what a trained parser returns: skin in the middle, hair elsewhere
        labels = np.full(batch.shape[:3], BISENET_CLASSES.index("hair"), np.uint8)
        labels[:, 128:384, 160:352] = BISENET_CLASSES.index("skin")
        return labels

    ed.helper.face_parser().labels = skin_in_a_box
    result = ed.edit(photo, "a face", **FAST)
    assert np.array_equal(result.mask, ed.helper.photo_mask(ed.helper.prepare(photo)))  # the automatic mask
    assert result.provenance["mask"] == "bisenet" and result.provenance["detector"] == "mediapipe-blazeface"
    assert [f["aligned_by"] for f in result.provenance["faces"]] == ["landmarks"]
    # the parser's box in the aligned crop, warped back: a box around the photo's face centre
    ys, xs = np.nonzero(result.mask)
    (bx0, by0, bx1, by1) = result.faces[0].box
    assert abs((xs.min() + xs.max()) / 2 - (bx0 + bx1) / 2) < 0.1 * (bx1 - bx0)
    assert_background_kept(result, photo)


def test_missing_bisenet_weights_without_a_mask_say_how_to_pass_one(editor, tmp_path):
    ed = with_helper(editor, bisenet_weights=tmp_path / "nope.pth")
    with pytest.raises(ModelLoadError) as e:
        ed.edit(textured(64, 64), "a face", **FAST)
    assert "nope.pth" in str(e.value) and "--mask" in str(e.value) and "--bisenet-weights" in str(e.value)
    ed.edit(textured(64, 64), "a face", mask=box_mask(64, 64, 10, 50, 10, 50), **FAST)  # a mask needs no parser


# --------------------------------------------------------------------------------------- bad input


def test_unreadable_and_oversized_photos_are_refused_with_the_file_name(editor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    with pytest.raises(ImageError, match="broken.jpg.*corrupt or unreadable"):
        editor.edit(bad, "a face", mask=np.ones((4, 4), bool), **FAST)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 megapixels in a few kilobytes
    with pytest.raises(ImageError, match=r"bomb.png: 9000x8000 \(72\.0 megapixels\) is over the limit"):
        editor.edit(bomb, "a face", mask=np.ones((8, 9), bool), **FAST)
    with pytest.raises(ImageError, match="not found"):
        editor.edit(tmp_path / "missing.png", "a face", mask=np.ones((4, 4), bool), **FAST)


def test_a_prompt_is_text_of_bounded_length_checked_before_the_photo(editor, tmp_path, monkeypatch):
    """None, a number or a list is not edited as its printed text, and a prompt over the limit is refused before
    the photo is read (so it cannot fail at signing after the generation)."""
    from facepaint.common.limits import MAX_PROMPT_CHARS

    monkeypatch.setattr(editor.helper, "prepare", lambda *a, **k: pytest.fail("the photo was read"))
    photo = textured(80, 120)
    for prompt, message in (
        (None, r"^prompt must be text, got NoneType None"),
        (7, r"^prompt must be text, got int 7"),
        (["a", None], r"^prompt 1 must be text"),
        ("x" * (MAX_PROMPT_CHARS + 1), r"^prompt is 2,001 characters, over the limit of 2,000"),
    ):
        with pytest.raises(ValueError, match=message):
            editor.edit(photo, prompt, **FAST)
    with pytest.raises(ValueError, match=r"^negative_prompt is 2,001 characters"):
        editor.edit(photo, "a face", negative_prompt="x" * (MAX_PROMPT_CHARS + 1), **FAST)
    with pytest.raises(ValueError, match=r"^prompt of image 1 is 2,001 characters"):
        editor.edit_batch([photo, photo], ["a face", "x" * (MAX_PROMPT_CHARS + 1)], masks=[None, None], **FAST)


def test_empty_or_misfit_masks(editor, tmp_path):
    photo = textured(80, 120)
    with pytest.raises(EditError, match="no face found in <array>: the mask"):
        editor.edit(photo, "a face", mask=np.zeros((80, 120), bool), **FAST)
    with pytest.raises(EditError, match="aspect ratio"):
        editor.edit(photo, "a face", mask=np.ones((80, 80), bool), **FAST)
    # A mask file at another size but the same aspect is resized to the photo and binarized at 0.5.
    small = np.zeros((40, 60), np.uint8)
    small[10:30, 20:40] = 255
    Image.fromarray(small).save(tmp_path / "mask.png")
    result = editor.edit(photo, "a face", mask=tmp_path / "mask.png", **FAST)
    assert result.mask.shape == (80, 120) and result.mask[20:60, 40:80].all() and result.mask.sum() == 40 * 40
    with pytest.raises(ValueError, match="strength"):
        editor.edit(photo, "a face", mask=result.mask, strength=0)


def test_edit_options_have_one_home_and_are_validated(editor):
    """SamplingOptions' and EditChoices' defaults are what `edit` uses (the CLI, the app and the pyfunc model
    parse users' values into them too); the provenance records every sampling option."""
    photo, mask = textured(64, 64, seed=14), box_mask(64, 64, 12, 52, 16, 48)
    result = editor.edit(photo, "a face", mask=mask, steps=2)
    prov, sampling, choices = result.provenance, SamplingOptions(), EditChoices()
    assert {k: prov[k] for k in dataclasses.asdict(sampling)} == {**dataclasses.asdict(sampling), "steps": 2}
    assert (prov["seed"], prov["blend"], prov["watermark"]) == (choices.seed, choices.blend, choices.watermark)
    with pytest.raises(ValueError, match="guidance_scale must be a finite"):
        SamplingOptions(guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="steps must be a whole number from 1"):
        SamplingOptions(steps=0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sigam'\]"):
        editor.edit(photo, "a face", mask=mask, sigam=3.0)  # not an edit option: a typo is an error


def test_users_values_are_parsed_and_refused_naming_the_option():
    """`parse_edit_options`, the one parser of users' values (text, form numbers, JSON) for the CLI, the app
    and the pyfunc model: each value converted to its option's type; a value that cannot be used is refused
    with the option's name as the Python API spells it (no command-line dashes)."""
    given = {"steps": "30", "guidance_scale": 5, "scheduler": "dpm", "strength": "0.5", "negative_prompt": "blurry"}
    given |= {"sigma": "8", "faces": "0,2", "min_face": 32.0, "seed": "7", "blend": "false", "watermark": "on"}
    sampling, choices = parse_edit_options(given)
    assert sampling == SamplingOptions(30, 5.0, "dpm", 0.5, "blurry", 8.0)
    assert choices == EditChoices(faces="0,2", min_face=32.0, seed=7, blend=False, watermark=True)
    assert parse_edit_options({}) == (SamplingOptions(), EditChoices())
    assert parse_edit_options({"steps": 30.0, "seed": 3.0}) == (SamplingOptions(steps=30), EditChoices(seed=3))
    refused = {  # option: (value, message)
        "steps": ("2.5", "steps must be a whole number"),
        "guidance_scale": ("nan", "guidance_scale must be a finite number"),
        "scheduler": ("euler", "scheduler must be one of ('ddim', 'dpm')"),
        "strength": ("2", "strength must be in (0, 1]"),
        "sigma": ("1000", "sigma must be a number from 0 to 100.0"),
        "faces": ("left", "faces must be 'all', 'largest' or indices"),
        "min_face": ("-1", "min_face must be a number from 0 to"),
        "seed": ("-3", "seed must be a whole number from 0"),
        "blend": ("yes please", "blend must be true or false"),
        "watermark": ("2", "watermark must be true or false"),
    }
    for name, (value, message) in refused.items():
        with pytest.raises(ValueError) as caught:
            parse_edit_options({name: value})
        assert message in str(caught.value) and "--" not in str(caught.value), (name, str(caught.value))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sigam'\]"):
        parse_edit_options({"sigam": "8"})


def test_keyword_options_are_split_and_edit_choices_are_checked():
    """`split_options`: keyword options as (SamplingOptions over a base, EditChoices); an option that is
    neither, or a value either refuses, is refused naming the option."""
    base = SamplingOptions(steps=10, scheduler="dpm")
    sampling, choices = split_options({"steps": 3, "sigma": 8.0, "faces": "largest", "watermark": True}, base)
    assert sampling == SamplingOptions(steps=3, scheduler="dpm", sigma=8.0)
    assert choices == EditChoices(faces="largest", watermark=True)
    assert split_options({}) == (SamplingOptions(), EditChoices())
    assert split_options({}, base) == (base, EditChoices())
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stpes'\]"):
        split_options({"stpes": 3})
    with pytest.raises(ValueError, match="steps must be a whole number from 1"):
        split_options({"steps": 0})
    with pytest.raises(ValueError, match="min_face must be a number from 0"):
        split_options({"min_face": -1})
    for bad, message in [
        ({"faces": "left"}, "faces must be 'all', 'largest' or indices"),
        ({"faces": [0, 0]}, "faces must be distinct indices"),
        ({"min_face": float("inf")}, "min_face must be a finite number"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": -1}, "seed must be a whole number from 0"),
        ({"blend": "yes"}, "blend must be True or False"),
        ({"watermark": 1}, "watermark must be True or False"),
    ]:
        with pytest.raises(ValueError) as caught:
            EditChoices(**bad)
        assert message in str(caught.value), (bad, str(caught.value))


def test_the_editor_leaves_the_photos_round_trip_to_its_helper(editor, tmp_path):
    """FaceEditor conducts an edit; finding, aligning, masking and pasting faces is `editor.helper`'s (a
    FaceHelper at the artifact's resolution and parts). The editor no longer has the helper's methods, nor
    sigma, min_face or a scheduler of its own: those are options of each edit."""
    helper = editor.helper
    assert isinstance(helper, FaceHelper) and helper.resolution == RES and helper.parts == editor.conditions.parts
    helpers = ["prepare", "prepare_all", "detect", "face_parser", "face_detector", "mask_job", "photo_mask", "paste"]
    for name in [*helpers, "parse_face", "padding", "sigma", "min_face", "scheduler"]:
        assert not hasattr(editor, name), name
    assert not hasattr(editor_mod, "paste_back") and not {"sigma", "scheduler", "min_face"} & set(editor.describe())
    for gone in ("sigma", "min_face", "scheduler"):
        with pytest.raises(TypeError, match=gone):
            FaceEditor(editor.inpainter, editor.artifact, **{gone: 1})
        with pytest.raises(TypeError, match=gone):  # refused before the artifact is even looked for
            FaceEditor.from_artifact(tmp_path / "nope", **{gone: 1})


def test_sigma_override_and_mismatched_inpainter(editor, comps, tmp_path):
    """sigma is an option of each edit, in pixels of a 512 px crop (at the model's 64 px, 8.0 is 1 px): it
    changes the blend only, and the provenance records it."""
    photo, mask = textured(96, 96, seed=15), box_mask(96, 96, 20, 70, 25, 75)
    wide = editor.edit(photo, "a face", mask=mask, **{**FAST, "sigma": 32.0})
    narrow = editor.edit(photo, "a face", mask=mask, **FAST)
    assert (wide.soft > 0).sum() > (narrow.soft > 0).sum()
    assert wide.provenance["sigma"] == 32.0 and narrow.provenance["sigma"] == 8.0
    assert np.array_equal(wide.generated, narrow.generated)  # the same crop, blended wider
    prepared = editor.helper.prepare(photo, mask)
    for result, px in ((narrow, 1.0), (wide, 4.0)):  # the helper pastes with sigma in the crop's pixels
        out, soft, _, _ = editor.helper.paste(prepared, [result.generated], px)
        assert np.array_equal(soft, result.soft) and np.array_equal(out, result.image)
    other = Inpainter(comps, editor.inpainter.adapter, 0.3, 2 * RES, device="cpu", speed_options=Speed(dtype="fp32"))
    with pytest.raises(ValueError, match="trained at 64 px"):
        FaceEditor(other, editor.artifact)


def test_the_scheduler_is_chosen_per_edit_and_recorded(editor):
    """`scheduler=` samples that edit with DPM-Solver++ (or DDIM), says so in the provenance, and leaves the
    next edit's scheduler to that edit; keyword options go over `options=`."""
    photo, mask = textured(96, 96, seed=16), box_mask(96, 96, 20, 70, 25, 75)
    ddim = editor.edit(photo, "a face", mask=mask, **FAST)
    dpm = editor.edit(photo, "a face", mask=mask, scheduler="dpm", **FAST)
    assert ddim.provenance["scheduler"] == "ddim" and dpm.provenance["scheduler"] == "dpm"
    assert not np.array_equal(dpm.generated, ddim.generated)
    assert np.array_equal(editor.edit(photo, "a face", mask=mask, **FAST).image, ddim.image)
    over = editor.edit(photo, "a face", mask=mask, options=SamplingOptions(steps=9, scheduler="dpm"), **FAST)
    assert over.provenance["scheduler"] == "dpm" and over.provenance["steps"] == 2
    assert np.array_equal(over.image, dpm.image)
    batch = editor.edit_batch([photo], "a face", masks=[mask], scheduler="dpm", **FAST)
    assert np.array_equal(batch[0].image, dpm.image) and batch[0].provenance["scheduler"] == "dpm"
    with pytest.raises(ValueError, match="scheduler must be one of"):
        editor.edit(photo, "a face", mask=mask, scheduler="euler")


def test_long_prompt_warns_and_names_what_was_cut(editor):
    prompt = "a portrait of " + "a very " * 40 + "smiling woman wearing red earrings"
    with pytest.warns(UserWarning, match="77 tokens.*red earrings"):
        result = editor.edit(textured(64, 64), prompt, mask=box_mask(64, 64, 10, 50, 10, 50), **FAST)
    assert result.provenance["prompt"] == prompt and result.provenance["prompt_cut"].endswith("red earrings")


def test_bytes_input_and_png_roundtrip(editor, tmp_path):
    buf = io.BytesIO()
    photo = textured(70, 70, seed=11)
    Image.fromarray(photo).save(buf, format="PNG")
    result = editor.edit(buf.getvalue(), "a face", mask=box_mask(70, 70, 20, 50, 20, 50), **FAST)
    assert_background_kept(result, photo)


# ------------------------------------------------------------------------------------------ batches


def test_edit_batch_equals_edit_per_photo(editor):
    photos = [textured(97, 150, seed=1), textured(64, 64, seed=2), textured(120, 80, seed=3)]
    masks = [box_mask(97, 150, 30, 60, 60, 95), box_mask(64, 64, 10, 50, 10, 50), box_mask(120, 80, 30, 90, 20, 60)]
    prompts = ["a smiling face", "a face with blond hair", "a smiling face"]
    batch = editor.edit_batch(photos, prompts, masks=masks, steps=2, seeds=[0, 1, 2], watermark=True)
    assert len(batch) == 3
    for i, result in enumerate(batch):
        alone = editor.edit(photos[i], prompts[i], mask=masks[i], steps=2, seed=i, watermark=True)
        assert_close_images(result.generated, alone.generated)
        assert result.region == alone.region and np.array_equal(result.mask, alone.mask)
        assert np.array_equal(result.soft, alone.soft)
        assert_background_kept(result, photos[i])
        assert result.provenance["runtime"]["batch"] == 3 and alone.provenance["runtime"]["batch"] == 1
        assert {**result.provenance, "runtime": None} == {**alone.provenance, "runtime": None}
    # one prompt and one seed for all; a batch of one is exactly `edit`
    same = editor.edit_batch(photos[:2], "a face", masks=masks[:2], steps=2, seeds=5)
    assert [r.provenance["seed"] for r in same] == [5, 5]
    one = editor.edit_batch([photos[1]], ["a face"], masks=[masks[1]], steps=2, seeds=[5])[0]
    assert np.array_equal(one.image, editor.edit(photos[1], "a face", mask=masks[1], steps=2, seed=5).image)
    prepared = editor.helper.prepare(photos[1], masks[1])
    assert np.array_equal(editor.edit_batch([prepared], "a face", steps=2, seeds=5)[0].image, one.image)


def test_edit_batch_reports_each_denoising_step(editor):
    """`on_step(i)` after each denoising step of the one pipeline call for the whole batch (for a progress
    bar): steps x strength of them."""
    photos = [textured(64, 64, seed=1), textured(80, 120, seed=2)]
    masks = [box_mask(64, 64, 10, 50, 10, 50), box_mask(80, 120, 20, 60, 40, 80)]
    steps = []
    editor.edit_batch(photos, "a face", masks=masks, steps=3, on_step=steps.append)
    assert steps == [1, 2, 3]
    steps.clear()
    editor.edit_batch(photos[:1], "a face", masks=masks[:1], steps=4, strength=0.5, on_step=steps.append)
    assert steps == [1, 2]


def test_edit_batch_names_the_photo_that_cannot_be_edited(editor, tmp_path):
    photos = [textured(64, 64, seed=1), textured(80, 120, seed=2)]
    good = box_mask(64, 64, 10, 50, 10, 50)
    with pytest.raises(EditError, match=r"^image 1 of 2: no face found in <array>: the mask"):
        editor.edit_batch(photos, "a face", masks=[good, np.zeros((80, 120), bool)], steps=2)
    with pytest.raises(EditError, match=r"^image 1 of 2: .*aspect ratio"):
        editor.edit_batch(photos, "a face", masks=[good, np.ones((80, 80), bool)], steps=2)
    with pytest.raises(ImageError, match=r"^image 0 of 2: .*missing.png.*not found"):
        editor.edit_batch([tmp_path / "missing.png", photos[1]], "a face", masks=[good, None], steps=2)
    with pytest.raises(ValueError, match="masks: expected one for all images or one per image"):
        editor.edit_batch(photos, "a face", masks=[good], steps=2)
    with pytest.raises(ValueError, match="seeds: expected"):
        editor.edit_batch(photos, "a face", masks=[good, None], steps=2, seeds=[1, 2, 3])


# ------------------------------------------------------------------------------------ several faces


@pytest.fixture(scope="module", params=["astronaut", pytest.param("celeba", marks=pytest.mark.fixture)])
def group(request):
    """Three real faces on a textured canvas and a mask painted over them: the astronaut's head scaled and
    rolled three times (always), or three fixture faces, scaled and rolled, on an odd-sized canvas with their
    annotated masks (where the fixture is)."""
    if request.param == "astronaut":
        photo, _, mask, _ = astronaut.heads()
        return photo, mask
    from tools.composites import composite, truth_mask

    fixture_root = request.getfixturevalue("fixture_root")
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()][20:23]
    photo, truths = composite(fixture_root, ids, canvas=(1203, 801), seed=5, scale=(0.8, 1.0))
    return photo, truth_mask(fixture_root, truths, (1203, 801), tiny_conditions(RES).parts)


def test_every_face_of_a_group_is_edited_with_its_own_prompt_and_the_rest_kept(editor, group):
    photo, mask = group
    found, detector = editor.helper.detect(photo)
    assert len(found) == 3 and detector == "mediapipe-blazeface"
    prompts = ["a smiling face", "a face with blond hair", "an old face"]
    result = editor.edit(photo, prompts, mask=mask, **FAST)
    assert [f.index for f in result.faces] == [0, 1, 2]
    assert [f["prompt"] for f in result.provenance["faces"]] == prompts
    assert_background_kept(result, photo)
    assert np.array_equal(result.mask, mask)  # the user's mask, cut per face and put together again
    for f in result.faces:  # each face changed, inside its own region
        x0, y0, x1, y1 = f.region
        assert (result.image[y0:y1, x0:x1][f.mask] != photo[y0:y1, x0:x1][f.mask]).any()
        assert f.generated.shape == (RES, RES, 3) and f.matrix.shape == (2, 3)
    # one batch for the three faces: the same as each face edited alone with its prompt
    alone = editor.edit(photo, prompts[1], mask=mask, faces="1", **FAST)
    assert_close_images(alone.faces[0].generated, result.faces[1].generated)


def test_faces_not_selected_or_not_covered_by_the_mask_are_left_alone(editor, group):
    photo, mask = group
    found, _ = editor.helper.detect(photo)
    some = editor.edit(photo, "a face", mask=mask, faces="0,2", **FAST)
    assert [f.index for f in some.faces] == [0, 2]
    x0, y0, x1, y1 = (round(v) for v in found[1].box)
    assert np.array_equal(some.image[y0:y1, x0:x1], photo[y0:y1, x0:x1])  # face 1 untouched
    # a mask that covers face 1 only: faces 0 and 2 are left alone, with a note each
    only = mask.copy()
    only[:, : round(found[0].box[2]) + 20] = False
    only[:, round(found[2].box[0]) - 20 :] = False
    one = editor.edit(photo, "a face", mask=only, **FAST)
    assert [f.index for f in one.faces] == [1]
    assert sum("is not covered by the mask: left alone" in n for n in one.notes) == 2
    assert_background_kept(one, photo)
    largest = editor.edit(photo, "a face", mask=mask, faces="largest", **FAST)
    assert len(largest.faces) == 1
    with pytest.raises(FaceError, match=r"face index \[3\] does not exist: <array> has faces 0-2"):
        editor.edit(photo, "a face", mask=mask, faces="1,3", **FAST)
    with pytest.raises(ValueError, match="one per edited face"):
        editor.edit(photo, ["a", "b"], mask=mask, **FAST)
    with pytest.warns(UserWarning, match="no face of at least 10000 px was detected"):  # none that large:
        small = editor.edit(photo, "a face", mask=mask, min_face=10_000, **FAST)
    assert {f.index for f in small.faces} == {None}  # the mask is the authority: its regions are edited
    assert np.array_equal(small.mask, mask)
    big = round(1.5 * max(f.width for f in found))  # every face under it, and found (a face of half is kept)
    assert min(f.width for f in found) > big / 2
    with pytest.warns(UserWarning, match=f"under --min-face {big}; edited because the mask marks it") as caught:
        under = editor.edit(photo, "a face", mask=mask, min_face=big, **FAST)
    assert [f.index for f in under.faces] == [0, 1, 2]
    assert sum("edited because the mask marks it" in str(w.message) for w in caught) == 3


def test_no_face_and_no_mask_is_a_clear_error(editor, random_bisenet_weights):
    ed = with_helper(editor, bisenet_weights=random_bisenet_weights)
    with pytest.raises(EditError, match=r"no face found in <array> \(detector mediapipe-blazeface.*--mask"):
        ed.edit(np.full((200, 300, 3), 128, np.uint8), "a face", **FAST)
