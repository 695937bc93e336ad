import io

import numpy as np
import pytest
from PIL import Image

from facepaint.common.images import MAX_PIXELS, ImageError, load_mask, load_rgb, resize_rgb


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
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(tmp_path / "bomb.png")


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
