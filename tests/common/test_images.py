import io

import numpy as np
import pytest
from PIL import Image

from facepaint.common.images import (
    MAX_PIXELS,
    ImageError,
    check_image_file,
    decode_png,
    encode_png,
    load_mask,
    load_rgb,
    read_photo,
    resize_binary,
    resize_rgb,
    worker_context,
)


def jpeg_bytes(size=(64, 64), mode="RGB", color=(200, 100, 50), **save):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="JPEG", quality=95, **save)
    return buf.getvalue()


def noise_jpeg(path, size=96):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def test_rgb_jpeg_loads_unchanged(tmp_path):
    path = noise_jpeg(tmp_path / "a.jpg")
    loaded = load_rgb(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (96, 96) and loaded.notes == []
    assert np.array_equal(np.asarray(loaded.image), np.asarray(Image.open(path).convert("RGB")))


def test_truncated_jpeg_is_an_error(tmp_path):
    data = noise_jpeg(tmp_path / "a.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or unreadable"):
        load_rgb(path)
    with pytest.raises(ImageError, match="corrupt or unreadable"):
        load_rgb(path, draft_size=32)  # the fast JPEG path must not hide truncation


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="corrupt or unreadable"):
        load_rgb(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_rgb(tmp_path / "missing.jpg")


@pytest.mark.parametrize("mode, color", [("L", 128), ("CMYK", (0, 255, 255, 0)), ("P", 3), ("I;16", 40000)])
def test_other_colour_modes_become_rgb(tmp_path, mode, color):
    path = tmp_path / "im.png" if mode in ("P", "I;16") else tmp_path / "im.jpg"
    im = Image.new(mode, (70, 70), color)
    im.save(path)
    loaded = load_rgb(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == (70, 70)
    assert any(mode in n for n in loaded.notes)
    px = np.asarray(loaded.image)[35, 35]
    if mode == "CMYK":  # cyan+magenta... (0,255,255,0) is red
        assert px[0] > 200 and px[1] < 60 and px[2] < 60
    if mode == "L":
        assert abs(int(px[0]) - 128) <= 2 and px[0] == px[1] == px[2]
    if mode == "I;16":
        assert abs(int(px[0]) - round(40000 / 65535 * 255)) <= 1


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((10, 10, 4), dtype=np.uint8)
    arr[:, :5] = (255, 0, 0, 255)  # opaque red left, transparent black right
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    loaded = load_rgb(tmp_path / "a.png")
    got = np.asarray(loaded.image)
    assert got[0, 0].tolist() == [255, 0, 0] and got[0, 9].tolist() == [255, 255, 255]
    assert "alpha" in loaded.notes[0]


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_rgb(tmp_path / "r.jpg")
    assert loaded.image.size == (20, 40)
    top = np.asarray(loaded.image)[:5].mean()
    assert top > 200  # the stripe is now at the top
    assert any("EXIF orientation 6" in n for n in loaded.notes)


def test_decompression_bomb_is_refused(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 2_000_000
    with pytest.raises(ImageError, match=r"over the limit of 24 megapixels \(refused before decoding"):
        load_rgb(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match=r"over the limit of 24 megapixels"):
        check_image_file((tmp_path / "bomb.png").read_bytes())


def test_the_limits_are_checked_from_the_header_and_size_before_decoding(tmp_path, monkeypatch):
    """check_image_file reads only the header: a file over the byte limit or a header over the pixel limit is
    refused without decoding (PIL's decoder is made to fail loudly here); within them it gives the size."""
    import facepaint.common.images as images_mod

    Image.new("RGB", (120, 80), "red").save(tmp_path / "ok.png")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    assert check_image_file(tmp_path / "ok.png") == (120, 80)
    monkeypatch.setattr(images_mod, "MAX_BYTES", 100)
    with pytest.raises(ImageError, match=r"MiB, over the limit of"):
        check_image_file(tmp_path / "ok.png")
    with pytest.raises(ImageError, match=r"MiB, over the limit of"):
        load_rgb(tmp_path / "ok.png")
    monkeypatch.setattr(images_mod, "MAX_BYTES", 10**9)
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 119 * 80)
    with pytest.raises(ImageError, match=r"120x80 \(0\.0 megapixels\) is over the limit"):
        check_image_file(tmp_path / "ok.png")
    with pytest.raises(ImageError, match=r"<array>: 120x80 .* over the limit"):  # the Python API's arrays too
        read_photo(np.zeros((80, 120, 3), np.uint8))
    with pytest.raises(ImageError, match="file not found"):
        check_image_file(tmp_path / "missing.png")


def test_size_rules(tmp_path):
    Image.new("RGB", (30, 30)).save(tmp_path / "tiny.png")
    Image.new("RGB", (100, 80)).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match="too small: 30x30"):
        load_rgb(tmp_path / "tiny.png", min_size=64)
    with pytest.raises(ImageError, match="not square: 100x80"):
        load_rgb(tmp_path / "wide.png", require_square=True)
    assert load_rgb(tmp_path / "wide.png").image.size == (100, 80)


def test_draft_decodes_smaller_but_not_below_the_request(tmp_path):
    path = noise_jpeg(tmp_path / "big.jpg", size=512)
    loaded = load_rgb(path, draft_size=128)
    assert loaded.image.size == (128, 128) and loaded.original_size == (512, 512)
    assert load_rgb(path, draft_size=200).image.size == (256, 256)
    assert resize_rgb(loaded.image, 64).shape == (64, 64, 3)


def test_load_mask_binarizes(tmp_path):
    arr = np.array([[0, 127], [128, 255]], dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[False, False], [True, True]]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match="corrupt part mask bad.png"):
        load_mask(tmp_path / "bad.png")


def test_read_photo_takes_a_path_bytes_an_image_or_an_array(tmp_path):
    path = noise_jpeg(tmp_path / "a.jpg")
    expected = np.asarray(Image.open(path).convert("RGB"))
    for given, name in ((path, str(path)), (str(path), str(path)), (path.read_bytes(), "<bytes>")):
        arr, got_name, notes = read_photo(given)
        assert np.array_equal(arr, expected) and got_name == name and notes == []
    arr, name, _ = read_photo(Image.open(path).convert("L"))
    assert arr.shape == (96, 96, 3) and name == "<image>"
    arr, name, _ = read_photo(expected)
    assert arr is expected and name == "<array>"
    Image.new("L", (8, 8), 10).save(tmp_path / "grey.png")
    assert read_photo(tmp_path / "grey.png")[2] == ["converted from L"]
    with pytest.raises(ImageError, match=r"^<bytes>: corrupt or unreadable"):
        read_photo(b"not an image")
    with pytest.raises(ImageError, match=f"^{tmp_path / 'missing.png'}: file not found"):
        read_photo(tmp_path / "missing.png")
    for bad in (expected.astype(np.float32), expected[..., :2], expected[..., 0]):
        with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\) RGB"):
            read_photo(bad)


def test_worker_context_is_a_forkserver_only_with_workers():
    assert worker_context(0) is None
    ctx = worker_context(2, ("facepaint.data.masks",))
    assert ctx.get_start_method() == "forkserver"


# ------------------------------------------------------------------------------- binary masks


def test_resize_binary():
    m = np.zeros((512, 512), dtype=bool)
    m[128:384, 128:384] = True
    small = resize_binary(m, 128)
    assert small.dtype == bool and small.shape == (128, 128) and small[32:96, 32:96].all() and small.sum() == 64 * 64
    wide = resize_binary(m[:, :256], (64, 128))  # (width, height): a non-square mask
    assert wide.shape == (128, 64) and wide[32:96, 32:].all() and not wide[:, :32].any()
    soft = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)  # a float mask is binarized at 0.5
    assert np.array_equal(resize_binary(soft, 4), soft >= 0.5)
    assert resize_binary(m, 512) is not m and np.array_equal(resize_binary(m, 512), m)


def test_png_encoding_roundtrip():
    rng = np.random.default_rng(1)
    b = rng.random((40, 40)) > 0.5
    back = decode_png(encode_png(b))
    assert back.dtype == bool and np.array_equal(back, b)
    f = rng.random((40, 40)).astype(np.float32)
    back = decode_png(encode_png(f))
    assert back.dtype == np.float32 and np.abs(back - f).max() <= 0.5 / 255 + 1e-6
    assert len(encode_png(np.zeros((512, 512), bool))) < 600  # 1-bit PNG: compact
    with pytest.raises(ImageError, match="corrupt mask PNG"):
        decode_png(jpeg_bytes())  # only PNG: a JPEG in a table cell is corrupt
