"""facepaint.edit on the tiny model at 64 px: the background guarantee (real fixture photos and odd
synthetic ones), the adapter, determinism, provenance, the BiSeNet path and bad input."""
import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from facepaint import edit as edit_mod
from facepaint import watermark as wm
from facepaint.adapter import FaceAdapter
from facepaint.artifact import ArtifactError, save_artifact
from facepaint.celebamask import FACE_PARTS
from facepaint.edit import EditError, FaceEditor, face_crop, pixel_blend, read_provenance
from facepaint.images import ImageError, load_rgb
from facepaint.masks import BISENET_CLASSES, annotation_union
from facepaint.models import ModelConfig, ModelLoadError, tiny_components

RES = 64
FAST = dict(steps=2, seed=0)


def make_adapter(comps, scale=0.5):
    torch.manual_seed(0)
    adapter = FaceAdapter(comps.text_encoder.config.hidden_size)
    torch.nn.init.normal_(adapter.w2.weight, std=scale)
    return adapter


@pytest.fixture(scope="module")
def comps():
    return tiny_components(seed=0)


@pytest.fixture(scope="module")
def editor(comps):
    return FaceEditor(comps, make_adapter(comps), 0.3, RES, device="cpu", sigma=1.0)


def box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def textured(h, w, seed=0):
    """A photo-like uint8 image: smooth gradients plus noise (so VAE round trips visibly change it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(xx / 17 + c) * np.cos(yy / 23) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


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


@pytest.mark.fixture
def test_background_is_bit_identical_on_real_photos(editor, fixture_root):
    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()[:3]]
    for image_id in ids:
        path = fixture_root / "CelebA-HQ-img" / f"{image_id}.jpg"
        original = np.asarray(load_rgb(path).image)
        mask, _ = annotation_union(fixture_root, image_id, FACE_PARTS)
        result = editor.edit(path, "a smiling woman with blond hair", mask=mask, watermark=image_id == ids[0], **FAST)
        assert_background_kept(result, original)
        assert result.mask.shape == original.shape[:2] and np.array_equal(result.mask, mask)
    raw = editor.edit(path, "a smiling woman", mask=mask, blend=False, **FAST)
    x0, y0, x1, y1 = raw.region
    inside_crop = np.zeros(mask.shape, bool)
    inside_crop[y0:y1, x0:x1] = True
    assert ((raw.image != original).any(axis=2) & (raw.soft == 0) & inside_crop).any()


def test_a_face_wider_than_the_photo_is_high_is_edited_inside_one_square(editor):
    photo = textured(40, 200, seed=12)
    mask = box_mask(40, 200, 5, 35, 10, 190)
    result = editor.edit(photo, "a face", mask=mask, **FAST)
    x0, y0, x1, y1 = result.region
    assert (y0, y1) == (0, 40) and x1 - x0 == 40
    assert "only the 40 px square" in result.notes[0] and not result.mask[:, :x0].any()
    assert_background_kept(result, photo)


# ---------------------------------------------------------------------------- the model is used right

def test_adapter_is_applied_and_seed_makes_it_deterministic(editor, comps, monkeypatch):
    photo = textured(96, 96, seed=7)
    mask = box_mask(96, 96, 20, 70, 25, 75)
    a = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    again = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    assert np.array_equal(a.image, again.image)
    other_seed = editor.edit(photo, "a face with blond hair", mask=mask, steps=2, seed=1)
    assert not np.array_equal(a.generated, other_seed.generated)

    zeroed = copy.deepcopy(editor.adapter)
    torch.nn.init.zeros_(zeroed.w2.weight)
    no_adapter = FaceEditor(comps, zeroed, 0.3, RES, device="cpu", sigma=1.0)
    b = no_adapter.edit(photo, "a face with blond hair", mask=mask, **FAST)
    assert not np.array_equal(a.generated, b.generated)

    calls = []
    real = edit_mod.condition
    monkeypatch.setattr(edit_mod, "condition", lambda e, beta, ad, s: calls.append((beta, ad, s)) or real(e, beta, ad, s))
    c = editor.edit(photo, "a face with blond hair", mask=mask, **FAST)
    # Both the prompt and the (empty) negative prompt go through the adapter, with the crop's beta.
    assert len(calls) == 2 and all(call == (c.provenance["beta"], editor.adapter, 0.3) for call in calls)
    assert 0 < c.provenance["beta"] < 1 and np.array_equal(c.image, a.image)


def test_from_artifact_matches_the_components_and_records_provenance(editor, comps, tmp_path):
    artifact = save_artifact(tmp_path / "model", comps.unet, editor.adapter, ModelConfig(source="tiny", seed=0), 0.3, RES)
    loaded = FaceEditor.from_artifact(tmp_path / "model", device="cpu", dtype="fp16", sigma=1.0)
    photo = textured(80, 120, seed=8)
    mask = box_mask(80, 120, 20, 60, 40, 80)
    result = loaded.edit(photo, "a face", mask=mask, negative_prompt="blurry", guidance_scale=5.0, **FAST)
    assert np.array_equal(result.image, editor.edit(photo, "a face", mask=mask, negative_prompt="blurry",
                                                    guidance_scale=5.0, **FAST).image)
    out = result.save(tmp_path / "out" / "edited.png")
    prov = read_provenance(out)
    assert prov == result.provenance
    assert prov["artifact_version"] == artifact.version and prov["model"] == "tiny-random(seed=0)"
    assert prov["prompt"] == "a face" and prov["negative_prompt"] == "blurry" and prov["seed"] == 0
    assert prov["guidance_scale"] == 5.0 and prov["steps"] == 2 and prov["blend"] is True
    assert prov["region"] == list(result.region) and prov["artifact_path"] == str(tmp_path / "model")
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



def test_bisenet_finds_the_face_when_no_mask_is_given(comps, editor, random_bisenet_weights):
    ed = FaceEditor(comps, editor.adapter, 0.3, RES, device="cpu", sigma=1.0, bisenet_weights=random_bisenet_weights)
    photo = textured(150, 97, seed=9)
    # Random weights label pixels arbitrarily: the flow must give a full-size mask or the clear error.
    assert ed.parse_face(photo).shape == (150, 97)
    try:
        ed.edit(photo, "a face", **FAST)
    except EditError as e:
        assert "no face found in <array>" in str(e)

    def skin_in_a_box(batch):  # what a trained parser returns: skin in the middle, hair elsewhere
        labels = np.full(batch.shape[:3], BISENET_CLASSES.index("hair"), np.uint8)
        labels[:, 128:384, 160:352] = BISENET_CLASSES.index("skin")
        return labels

    ed.face_parser().labels = skin_in_a_box
    result = ed.edit(photo, "a face", **FAST)
    assert result.provenance["mask"] == "bisenet"
    ys, xs = np.nonzero(result.mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == pytest.approx((37, 112, 30, 66), abs=1)
    assert_background_kept(result, photo)


def test_missing_bisenet_weights_without_a_mask_say_how_to_pass_one(comps, editor, tmp_path):
    ed = FaceEditor(comps, editor.adapter, 0.3, RES, device="cpu", bisenet_weights=tmp_path / "nope.pth")
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
    with pytest.raises(ImageError, match="decompression bomb"):
        editor.edit(bomb, "a face", mask=np.ones((8, 9), bool), **FAST)
    with pytest.raises(ImageError, match="not found"):
        editor.edit(tmp_path / "missing.png", "a face", mask=np.ones((4, 4), bool), **FAST)


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


# ------------------------------------------------------------------------------ speed options, batches

# Batching changes the summation order inside the batched convolutions and matrix products on the CPU
# (the noise is the same: each crop has its own generator), so a batched crop may differ from the same
# crop generated alone by a rounding step: at most 2/255 per channel, on at most 1% of the values.
BATCH_TOL, BATCH_FRACTION = 2, 0.01


def assert_close_images(a, b, tol=BATCH_TOL, fraction=BATCH_FRACTION):
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= tol and (diff > 0).mean() <= fraction, (diff.max(), (diff > 0).mean())


def conv_in(editor):
    return editor.pipe.unet.conv_in.weight  # a 3 x 3 conv: NCHW and NHWC layouts differ


def processors(model):
    return {type(p).__name__ for p in model.attn_processors.values()}


def test_speed_options_are_applied_and_recorded(monkeypatch):
    comps = tiny_components(seed=0)  # the options change the components in place: not the shared fixture
    adapter = make_adapter(comps)
    classic = FaceEditor(comps, adapter, 0.3, RES, device="cpu", attention="classic", channels_last=True)
    assert processors(classic.pipe.unet) == processors(classic.pipe.vae) == {"AttnProcessor"}
    for module in (classic.pipe.unet, classic.pipe.vae):
        weight = next(p for p in module.parameters() if p.ndim == 4 and p.shape[-1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert classic.runtime == {"device": "cpu", "dtype": "fp32", "attention": "classic", "channels_last": True,
                               "compile": "off"}

    default = FaceEditor(comps, adapter, 0.3, RES, device="cpu")  # sdpa; channels_last None: off on the CPU
    assert processors(default.pipe.unet) == processors(default.pipe.vae) == {"AttnProcessor2_0"}
    assert conv_in(default).is_contiguous() and default.runtime["channels_last"] is False
    assert default.pipe.unet is comps.unet  # not compiled

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or copy.copy(module))
    ed = FaceEditor(comps, adapter, 0.3, RES, device="cpu", compile="max-autotune")
    assert compiled == [{"mode": "max-autotune", "dynamic": False}] and ed.pipe.unet is not comps.unet
    FaceEditor(comps, adapter, 0.3, RES, device="cpu", compile=True)
    assert compiled[-1] == {"mode": None, "dynamic": False} and ed.runtime["compile"] == "max-autotune"


@pytest.mark.parametrize("bad, message", [
    ({"attention": "flash"}, "attention must be one of"),
    ({"channels_last": "yes"}, "channels_last must be True, False or None"),
    ({"compile": "fast"}, "compile must be true, false or one of"),
    ({"dtype": "fp8"}, "dtype must be one of"),
])
def test_invalid_speed_options_are_refused_before_touching_the_model(bad, message):
    comps = tiny_components(seed=0)
    with pytest.raises(ValueError, match=message):
        FaceEditor(comps, None, 0.0, RES, device="cpu", **{"attention": "classic", **bad})
    assert processors(comps.unet) == {"AttnProcessor2_0"}  # nothing was applied


def test_attention_and_channels_last_keep_the_image(editor):
    photo, mask = textured(64, 64, seed=13), box_mask(64, 64, 12, 52, 16, 48)
    reference = editor.edit(photo, "a face", mask=mask, **FAST)
    comps = tiny_components(seed=0)
    other = FaceEditor(comps, editor.adapter, 0.3, RES, device="cpu", sigma=1.0, attention="classic",
                       channels_last=True)
    result = other.edit(photo, "a face", mask=mask, **FAST)
    assert_close_images(result.generated, reference.generated)
    assert result.provenance["runtime"]["attention"] == "classic"
    assert reference.provenance["runtime"] == {"device": "cpu", "dtype": "fp32", "attention": "sdpa",
                                               "channels_last": False, "compile": "off", "batch": 1}


def test_generate_batch_equals_generate_per_crop(editor):
    crops = [textured(RES, RES, seed=s) for s in (20, 21)]
    masks = [box_mask(RES, RES, 10, 50, 15, 45), box_mask(RES, RES, 5, 40, 20, 60)]
    betas = [float(m.mean()) for m in masks]
    prompts = ["a smiling face", "a face with blond hair"]
    images, cuts = editor.generate_batch(crops, masks, betas, prompts, "blurry", 3, 5.0, 1.0, [4, 9])
    assert len(images) == 2 and cuts == ["", ""]
    alone = [editor.generate(c, m, b, p, "blurry", 3, 5.0, 1.0, s)[0]
             for c, m, b, p, s in zip(crops, masks, betas, prompts, (4, 9))]
    for batched, single in zip(images, alone):
        assert_close_images(batched, single)
    assert not np.array_equal(alone[0], editor.generate(crops[0], masks[0], betas[0], prompts[0], "blurry", 3, 5.0,
                                                        1.0, 9)[0])  # the seed matters, so the check can fail
    with pytest.raises(ValueError, match="one per image"):
        editor.generate_batch(crops, masks, betas, ["one", "two", "three"], steps=2)
    with pytest.raises(ValueError, match="crop 1: expected a uint8"):
        editor.generate_batch([crops[0], crops[1][:32]], masks, betas, "a face", steps=2)


def test_encode_prompts_batches_and_deduplicates(editor):
    te, tok = editor.pipe.text_encoder, editor.pipe.tokenizer
    long = "a portrait of " + "a very " * 40 + "smiling woman"
    with torch.inference_mode():
        e, cuts = edit_mod.encode_prompts(te, tok, ["a face", long, "a face"])
        one, cut = edit_mod.encode_prompt(te, tok, long)
    assert e.shape == (3, tok.model_max_length, te.config.hidden_size) and one.shape[0] == 1
    assert cuts[0] == cuts[2] == "" and cuts[1] == cut and cut.endswith("smiling woman")
    assert torch.equal(e[0], e[2]) and torch.allclose(e[1], one[0], atol=1e-5)


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
        assert ({**result.provenance, "runtime": None} == {**alone.provenance, "runtime": None})
    # one prompt and one seed for all; a batch of one is exactly `edit`
    same = editor.edit_batch(photos[:2], "a face", masks=masks[:2], steps=2, seeds=5)
    assert [r.provenance["seed"] for r in same] == [5, 5]
    one = editor.edit_batch([photos[1]], ["a face"], masks=[masks[1]], steps=2, seeds=[5])[0]
    assert np.array_equal(one.image, editor.edit(photos[1], "a face", mask=masks[1], steps=2, seed=5).image)
    prepared = editor.prepare(photos[1], masks[1])
    assert np.array_equal(editor.edit_batch([prepared], "a face", steps=2, seeds=5)[0].image, one.image)


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


@pytest.mark.slow
def test_compiled_unet_gives_the_eager_image(editor):
    """FaceEditor(compile=...) really compiles the UNet (inductor, CPU here) and keeps the image."""
    torch._dynamo.reset()
    photo, mask = textured(64, 64, seed=21), box_mask(64, 64, 12, 52, 16, 48)
    reference = editor.edit(photo, "a face", mask=mask, **FAST)
    compiled = FaceEditor(tiny_components(seed=0), editor.adapter, 0.3, RES, device="cpu", sigma=1.0,
                          compile="default")
    assert isinstance(compiled.pipe.unet, torch._dynamo.eval_frame.OptimizedModule)
    result = compiled.edit(photo, "a face", mask=mask, **FAST)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert_close_images(result.generated, reference.generated)
    assert result.provenance["runtime"]["compile"] == "default"
