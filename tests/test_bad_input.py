"""Bad input is refused with the project's own error and a message, never another exception, and never
passes silently. Property-based (hypothesis, derandomized so a run is reproducible), per interface:

(a) image decoding (`common.images.load_rgb`): arbitrary bytes, truncated and corrupted PNG/JPEG/WEBP/GIF/TIFF/BMP
    files, every PIL colour mode, extreme sizes, animated images, EXIF orientations, oversized headers:
    a uint8 RGB image of the right size or ImageError; a decompression bomb is refused before decoding
    (the process's peak memory does not grow).
(b) masks (`method.face_helper.fit_mask` and `load_mask`, `common.images.load_mask` and `decode_png`):
    arbitrary arrays, shapes, dtypes, NaN, arbitrary bytes: a bool mask or ImageError / EditError / ValueError.
(c) params.yaml (`stages.common.section` for every section): wrong types, NaN, inf, negatives, huge
    numbers, missing, unknown and nested keys: a config that satisfies the rules below, or SystemExit
    naming the key.
(d) the options of every interface, checked before any model loads or any face is looked for: the Python
    API's `SamplingOptions` and `EditChoices` (`FaceEditor.edit`'s keywords), `FaceHelper`'s padding and
    detector, and `parse_edit_options`, the one parser of user values that `facepaint edit` and the pyfunc
    model's params go through.

Each property counts its examples; `test_zz_example_counts` prints them (run with -s to see them).
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import json
import math
import os
import shutil
import string
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from facepaint.common import images as images_mod
from facepaint.common.checks import MAX_SEED
from facepaint.common.images import MAX_PIXELS, ImageError, decode_png, encode_png, load_rgb
from facepaint.common.images import load_mask as load_part_mask
from facepaint.editing.editor import EditChoices, FaceEditor, parse_edit_options, split_options
from facepaint.method.detection import DETECTORS, parse_selection
from facepaint.method.face_helper import MAX_MIN_FACE, MAX_PADDING, EditError, FaceHelper, fit_mask
from facepaint.method.face_helper import load_mask as load_face_mask
from facepaint.method.options import MAX_GUIDANCE, MAX_SIGMA, MAX_STEPS, SCHEDULERS, SamplingOptions

# PIL warns about the corrupt files and oversized headers this file makes on purpose (and refuses them)
pytestmark = [
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
]
REPO = Path(__file__).resolve().parents[1]
EXAMPLES: dict[str, int] = {}  # property -> examples run
SCRATCH = Path(tempfile.mkdtemp(prefix="facepaint-bad-input-"))  # files the properties write (overwritten)
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


def fuzz(max_examples: int):
    """hypothesis settings of this file: reproducible (derandomized), no example database in the checkout;
    `max_examples` with --runslow, a third of it (at least 20) in the default run ($FACEPAINT_FUZZ_SCALE, set by
    tests/conftest.py, scales it)."""
    scale = float(os.environ.get("FACEPAINT_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(20, round(max_examples * scale)) if scale < 1 else max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def count(name: str) -> None:
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1


# ============================================================================ (a) image decoding


def decoded(data, size=None) -> np.ndarray | None:
    """load_rgb's outcome: the RGB array (checked: uint8, H x W x 3, `size` = (w, h) when given), or None
    for an ImageError with a message. Any other exception fails the test."""
    try:
        loaded = load_rgb(data)
    except ImageError as e:
        assert str(e).strip(), "an ImageError without a message"
        return None
    arr = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB" and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert min(arr.shape[:2]) >= 1
    if size is not None:
        assert loaded.image.size == size, (loaded.image.size, size)
    return arr


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# Which writer stores each mode (as it is, or as PIL converts it for that format).
WRITERS = {
    "1": ("PNG", "TIFF", "BMP", "GIF"),
    "L": ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"),
    "LA": ("PNG", "TIFF"),
    "P": ("PNG", "GIF", "TIFF", "BMP"),
    "RGB": ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"),
    "RGBA": ("PNG", "TIFF", "WEBP"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "I": ("TIFF",),  # (PIL 12 deprecates saving I as PNG)
    "F": ("TIFF",),
}
SIZES = st.one_of(
    st.tuples(st.integers(1, 48), st.integers(1, 48)),  # small, 1x1 included
    st.tuples(st.just(1), st.integers(1, 3000)),  # 1 x N
    st.tuples(st.integers(1, 3000), st.just(1)),  # N x 1
    st.tuples(st.integers(2000, 6000), st.integers(1, 3)),  # very wide
    st.tuples(st.integers(1, 3), st.integers(2000, 6000)),  # very tall
)


def make_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """A random image of `mode` and size = (w, h)."""
    w, h = size
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))  # I;16
    if mode == "I":
        return Image.fromarray(rng.integers(-(2**20), 2**20, (h, w), dtype=np.int32))  # I
    if mode == "F":
        arr = rng.normal(0, 300, (h, w)).astype(np.float32)
        arr.flat[:: max(1, arr.size // 3)] = np.nan  # NaN pixels too
        return Image.fromarray(arr)  # F
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert("RGB").convert(mode)


@st.composite
def image_files(draw, formats=None):
    """(file bytes, (w, h), mode, format) of a valid image."""
    mode = draw(st.sampled_from(sorted(WRITERS)))
    choices = [f for f in WRITERS[mode] if formats is None or f in formats]
    assume(choices)
    fmt = draw(st.sampled_from(choices))
    size = draw(SIZES)
    image = make_image(mode, size, draw(st.integers(0, 2**16)))
    return encode(image, fmt), size, mode, fmt


@given(st.binary(max_size=4096))
@fuzz(1500)
def test_arbitrary_bytes_are_refused_or_decoded(data):
    count("a: arbitrary bytes")
    decoded(data)


MAGICS = [
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xdb",
    b"GIF89a",
    b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"8BPS",  # PSD, EPS, QOI, ICO, PCX: decoders that are never tried
    b"%!PS-Adobe-3.0 EPSF-3.0",
    b"qoif",
    b"\x00\x00\x01\x00",
    b"\x0a\x05\x01\x08",
]


@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
@fuzz(1500)
def test_bytes_behind_an_image_signature_are_refused_or_decoded(magic, rest):
    count("a: bytes behind a signature")
    decoded(magic + rest)


@given(image_files())
@fuzz(400)
def test_every_colour_mode_and_size_decodes_to_rgb(file):
    """A valid file always decodes, to RGB at its own size: 1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F at
    1x1, 1xN, Nx1 and very wide or tall sizes, in each format that stores the mode."""
    count("a: valid files, every mode and size")
    data, size, mode, fmt = file
    assert decoded(data, size) is not None, (mode, fmt, size)


@given(image_files(formats=("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")), st.data())
@fuzz(800)
def test_truncated_files_are_refused_or_decoded_at_their_size(file, data):
    count("a: truncated files")
    raw, size, *_ = file
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    decoded(raw[:cut], size if cut else None)


@given(image_files(formats=("PNG", "JPEG", "WEBP", "GIF", "TIFF")), st.data())
@fuzz(800)
def test_corrupted_files_are_refused_or_decoded(file, data):
    count("a: corrupted bytes")
    raw = bytearray(file[0])
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    decoded(bytes(raw))


@given(st.sampled_from(["GIF", "PNG", "WEBP"]), st.integers(2, 6), SIZES.filter(lambda s: s[0] * s[1] <= 20_000))
@fuzz(60)
def test_animated_images_give_their_first_frame(fmt, frames, size):
    count("a: animated images")
    seq = [make_image("RGB", size, i) for i in range(frames)]
    data = encode(seq[0], fmt, save_all=True, append_images=seq[1:], duration=40, loop=0)
    loaded = load_rgb(data)
    assert loaded.image.size == size and any("animated" in n for n in loaded.notes)


@given(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535]), st.tuples(st.integers(1, 40), st.integers(1, 40)))
@fuzz(60)
def test_exif_orientations_valid_or_not(orientation, size):
    count("a: EXIF orientations")
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(make_image("RGB", size, 0), "JPEG", exif=exif.tobytes())
    w, h = size
    decoded(data, (h, w) if orientation in (5, 6, 7, 8) else (w, h))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, idat: bytes = b"", colour: int = 0, depth: int = 8, extra: bytes = b"") -> bytes:
    """A PNG with this header and these IDAT bytes (not necessarily complete)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@given(
    st.integers(1, 2**31 - 1).flatmap(
        lambda w: st.tuples(
            st.just(w), st.integers(MAX_PIXELS // w + 1, 2**31 - 1).filter(lambda h: w * h > MAX_PIXELS)
        )
    ),
    st.sampled_from([(0, 8), (2, 8), (6, 16), (3, 8), (0, 1)]),
)
@fuzz(300)
def test_oversized_headers_are_refused_before_decoding(size, kind):
    """Any header over MAX_PIXELS is refused in well under a second, whatever its colour type and depth."""
    count("a: oversized headers")
    w, h = size
    start = time.perf_counter()
    with pytest.raises(ImageError, match="megapixels|decompression bomb"):
        load_rgb(png(w, h, colour=kind[0], depth=kind[1]))
    assert time.perf_counter() - start < 0.5


def test_the_pixel_limit_is_exact(monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 100 * 100)
    assert decoded(encode(make_image("RGB", (100, 100), 0), "PNG"), (100, 100)) is not None
    with pytest.raises(ImageError, match="over the limit of .* megapixels \\(refused before decoding"):
        load_rgb(encode(make_image("RGB", (101, 100), 0), "PNG"))


def zeros_zlib(n: int) -> bytes:
    """zlib of n zero bytes, compressed in pieces (100 MB -> about 100 KB)."""
    z, block = zlib.compressobj(9), b"\x00" * (1 << 20)
    parts = [z.compress(block) for _ in range(n >> 20)] + [z.compress(b"\x00" * (n & ((1 << 20) - 1))), z.flush()]
    return b"".join(parts)


def bombs() -> dict[str, bytes]:
    """Small files that would take hundreds of MB to gigabytes once decoded."""
    side = 10_000  # 100 megapixels of zeros: 100 MB grey, 300 MB as RGB
    jpeg = bytearray(encode(make_image("RGB", (16, 16), 0), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    big = bytearray(jpeg)
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 9_000, 9_000)  # 81 MP: over our 64, under PIL's 89
    big[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # 3.6 gigapixels: PIL's own bomb error
    gif = bytearray(encode(make_image("P", (16, 16), 0), "GIF"))
    gif[6:10] = struct.pack("<HH", 65_535, 65_535)  # 4.3 gigapixels
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zeros_zlib(100 << 20))  # 100 MB of text
    return {
        "png 10000x10000 of zeros": png(side, side, zeros_zlib((side + 1) * side)),
        "jpeg header 9000x9000": bytes(jpeg),
        "jpeg header 60000x60000": bytes(big),
        "gif screen 65535x65535": bytes(gif),
        "png with a 100 MB zTXt": png(4, 4, zlib.compress(b"\x00" * 20), extra=ztxt),
    }


CHILD = """
import json, re, sys
from pathlib import Path
from facepaint.common.images import ImageError, load_rgb

files = [open(p, "rb").read() for p in sys.argv[1:]]
# the process's peak resident memory so far, KiB (not getrusage's ru_maxrss: Linux keeps it across exec,
# so a child started by a large pytest process would start at the parent's peak)
rss = lambda: int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
base, results = rss(), []
for data in files[:-1]:
    try:
        load_rgb(data)
        results.append("decoded")
    except ImageError as e:
        results.append(str(e))
bombs = rss() - base
control = load_rgb(files[-1]).image  # a real 4000x4000 photo: 48 MB as RGB
print(json.dumps({"bombs_kib": bombs, "control_kib": rss() - base, "results": results}))
"""


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    """The process's peak memory (VmHWM, in a fresh interpreter) grows by under 32 MB over five bomb files,
    while decoding one real 16-megapixel photo afterwards grows it by more: the measure would see a bomb
    being decoded. (tracemalloc would not: PIL allocates pixels in C.)"""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux's /proc/self/status (VmHWM)")
    files = bombs()
    paths = [tmp_path / f"bomb{i}" for i in range(len(files))]
    for path, data in zip(paths, files.values()):
        path.write_bytes(data)
    control = tmp_path / "control.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (4000, 4000), dtype=np.uint8)).save(control)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, paths), str(control)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    print(f"peak memory growth: bombs {got['bombs_kib'] / 1024:.1f} MiB, control {got['control_kib'] / 1024:.1f} MiB")
    for name, result in zip(files, got["results"]):
        if name.startswith("png with"):  # PIL refuses or skips the oversized text chunk: either is fine
            continue
        assert "megapixels" in result or "decompression bomb" in result, (name, result)
    assert got["bombs_kib"] < 32 * 1024, got
    assert got["control_kib"] - got["bombs_kib"] > 32 * 1024, got


def test_formats_outside_the_list_are_refused_with_a_reason():
    for fmt in ("PCX", "TGA", "SGI", "QOI", "ICO", "PPM"):
        data = encode(make_image("RGB", (8, 8), 0), fmt)
        with pytest.raises(ImageError, match="not a JPEG, PNG, WEBP, GIF, BMP or TIFF image"):
            load_rgb(data)


# ================================================================================== (b) masks


def mask_outcome(call, shape: tuple[int, int]) -> None:
    """`call()` gives a bool mask of `shape`, or raises ImageError / EditError / ValueError with a message."""
    try:
        m = call()
    except (ImageError, EditError, ValueError) as e:
        assert str(e).strip()
        return
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == shape, (m.dtype, m.shape, shape)


MASK_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    st.just(np.dtype(object)),
    st.just(np.dtype("U3")),
)


@st.composite
def mask_cases(draw):
    """(an array, the photo's (w, h)): arrays of any dtype, usually of the photo's aspect ratio."""
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    shape = draw(
        st.one_of(
            st.sampled_from([(h, w), (2 * h, 2 * w), (max(1, h // 2), max(1, w // 2)), (w, h)]),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
        )
    )
    dtype = draw(MASK_DTYPES)
    if dtype.kind == "O":
        arr = np.empty(shape, object)
        arr.fill(draw(st.sampled_from([None, "x", 1, 0.5])))
    elif dtype.kind == "U":
        arr = np.full(shape, draw(st.sampled_from(["", "1", "abc"])), dtype)
    elif draw(st.booleans()) and dtype.kind in "fc":
        arr = np.full(shape, np.nan, dtype)  # NaN-filled
    else:
        arr = draw(hnp.arrays(dtype, shape))
    return arr, (w, h)


@given(mask_cases())
@fuzz(1000)
def test_fit_mask_on_any_array(case):
    count("b: fit_mask arrays")
    arr, (w, h) = case
    mask_outcome(lambda: fit_mask(arr, (w, h)), (h, w))


def test_fit_mask_refuses_nan_and_odd_dtypes_by_name():
    for bad, reason in (
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4), np.inf), "NaN or infinite"),
        (np.zeros((4, 4), complex), "dtype complex"),
        (np.full((4, 4), None, object), "dtype object"),
        (np.zeros((0, 4)), "2-D"),
        (np.zeros((4, 4, 3)), "2-D"),
    ):
        with pytest.raises(ValueError, match=reason):
            fit_mask(bad, (4, 4), "mask m.png")


@st.composite
def mask_files(draw):
    """(file bytes, the photo's (w, h)): a valid mask image of some mode, size and format, or garbage."""
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=512)), (w, h)
    k = draw(st.sampled_from([1, 2]))
    mw, mh = draw(st.sampled_from([(w * k, h * k), (w, h), (h, w), (w + 3, h)]))
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]))
    fmt = draw(st.sampled_from(WRITERS[mode if mode in WRITERS else "L"]))
    data = encode(make_image(mode, (mw, mh), draw(st.integers(0, 99))), fmt)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data, (w, h)


@given(mask_files())
@fuzz(500)
def test_face_mask_files(case):
    count("b: method.face_helper.load_mask files")
    data, (w, h) = case
    path = SCRATCH / "mask.img"
    path.write_bytes(data)
    mask_outcome(lambda: load_face_mask(path, (w, h)), (h, w))


@given(mask_files())
@fuzz(500)
def test_part_mask_files(case):
    count("b: common.images.load_mask files")
    data, _ = case
    path = SCRATCH / "part.img"
    path.write_bytes(data)
    try:
        m = load_part_mask(path)
    except ImageError as e:
        assert str(e).strip()
        return
    assert m.dtype == bool and m.ndim == 2


@given(st.one_of(st.binary(max_size=1024), st.sampled_from(MAGICS).map(lambda m: m + b"\x00" * 64)))
@fuzz(500)
def test_decode_png_of_arbitrary_bytes(data):
    count("b: decode_png bytes")
    try:
        m = decode_png(data)
    except ImageError as e:
        assert "mask PNG" in str(e)
        return
    assert m.ndim == 2 and m.dtype in (bool, np.float32)


@given(
    st.one_of(
        hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)),
        hnp.arrays(
            np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40), elements=st.floats(-2, 2, width=32)
        ),
    )
)
@fuzz(300)
def test_encode_decode_png_roundtrip(mask):
    count("b: encode/decode_png roundtrip")
    back = decode_png(encode_png(mask))
    if mask.dtype == bool:
        assert back.dtype == bool and np.array_equal(back, mask)
    else:
        assert back.dtype == np.float32 and np.abs(back - np.clip(mask, 0, 1)).max() <= 0.5 / 255 + 1e-6


# ============================================================================= (c) params.yaml


def config_classes() -> dict:
    from facepaint.data.captions import CaptionConfig
    from facepaint.data.latents import LatentConfig
    from facepaint.data.masks import MaskConfig
    from facepaint.data.split import SplitConfig
    from facepaint.evaluation.ablation import AblationConfig
    from facepaint.evaluation.run import EvalConfig
    from facepaint.method.models import ModelConfig
    from facepaint.method.train import TrainConfig
    from flows.retrain import RetrainConfig
    from stages.register import RegisterConfig
    from tools.demo import DemoConfig

    return {
        "demo": DemoConfig,
        "split": SplitConfig,
        "masks": MaskConfig,
        "captions": CaptionConfig,
        "model": ModelConfig,
        "latents": LatentConfig,
        "train": TrainConfig,
        "sampling": SamplingOptions,
        "evaluate": EvalConfig,
        "ablation": AblationConfig,
        "register": RegisterConfig,
        "retrain": RetrainConfig,
    }


CONFIGS = config_classes()
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
UNIT, POSITIVE, NON_NEGATIVE = (0, 1), (1, None), (0, None)
SEED = (0, MAX_SEED)
# What a config may hold once section() accepted it (the settings' meaning, independent of the code that
# checks them). Every number must also be finite and of params.yaml's type (a whole number where it has one).
RULES = {
    "demo.n_images": POSITIVE,
    "demo.size": (64, None),
    "demo.mask_size": (16, None),
    "split.train_parts": POSITIVE,
    "split.test_parts": POSITIVE,
    "split.max_malformed_fraction": UNIT,
    "masks.resolution": POSITIVE,
    "masks.latent_factor": POSITIVE,
    "masks.batch_size": POSITIVE,
    "masks.workers": NON_NEGATIVE,
    "masks.min_size": POSITIVE,
    "masks.max_unusable_fraction": UNIT,
    "captions.n_candidates": POSITIVE,
    "latents.batch_size": POSITIVE,
    "latents.shard_size": POSITIVE,
    "latents.workers": NON_NEGATIVE,
    "latents.max_unusable_fraction": UNIT,
    **{f"train.{k}": POSITIVE for k in ("batch_size", "epochs", "max_steps", "keep_checkpoints", "log_every")},
    **{
        f"train.{k}": NON_NEGATIVE
        for k in ("lr_kv", "lr_adapter", "weight_decay", "adam_eps", "max_grad_norm", "warmup_steps", "alpha")
    },
    **{f"train.{k}": NON_NEGATIVE for k in ("adapter_scale", "checkpoint_every")},
    "train.adam_beta1": (0, 0.999999),
    "train.adam_beta2": (0, 0.999999),
    "train.flip_p": UNIT,
    "train.caption_dropout": UNIT,
    "sampling.steps": (1, MAX_STEPS),
    "sampling.guidance_scale": (0, MAX_GUIDANCE),
    "sampling.strength": (1e-300, 1),
    "sampling.sigma": (0, MAX_SIGMA),
    "evaluate.n_pairs": POSITIVE,
    **{f"evaluate.{k}": NON_NEGATIVE for k in ("background_dilation", "warmup")},
    **{f"evaluate.{k}": POSITIVE for k in ("fid_reference_size", "fid_batch_size", "grid_photos", "profile_radius")},
    "evaluate.brushnet.conditioning_scale": NON_NEGATIVE,
    "evaluate.brushnet.steps": (1, MAX_STEPS),
    "evaluate.brushnet.guidance_scale": (0, MAX_GUIDANCE),
    "evaluate.diptych.steps": POSITIVE,
    "evaluate.diptych.guidance_scale": NON_NEGATIVE,
    "evaluate.diptych.true_guidance_scale": NON_NEGATIVE,
    "evaluate.diptych.controlnet_conditioning_scale": NON_NEGATIVE,
    "evaluate.diptych.attention_scale": (1e-300, None),
    "evaluate.diptych.panel": POSITIVE,
    "evaluate.diptych.pixel_offset": NON_NEGATIVE,
    "evaluate.diptych.max_sequence_length": (1, 512),
    "ablation.grid_photos": POSITIVE,
}


def flat(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "gate":
            out.update(flat(v, f"{prefix}.{k}"))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def assert_valid(name: str, cfg) -> None:
    """The accepted config keeps params.yaml's types, finite numbers, and RULES."""
    base, got = flat(PARAMS[name], name), flat(dataclasses.asdict(cfg), name)
    for key, value in got.items():
        like = base.get(key)
        if key == "train.compile":  # false | true | a torch.compile mode, kept as the mode's name
            assert value in ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        elif isinstance(like, bool):
            assert isinstance(value, (bool, np.bool_)), (key, value)
        elif isinstance(like, (int, float)) or key in RULES:
            if value is None and key == "train.max_steps":
                continue
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
            assert math.isfinite(value), (key, value)
            if isinstance(like, int) and not isinstance(like, bool):
                assert isinstance(value, int), (key, value)
        elif isinstance(like, str):
            assert isinstance(value, str), (key, value)
        elif isinstance(like, list):
            assert isinstance(value, (list, tuple)), (key, value)
        if key.endswith(".seed"):
            assert SEED[0] <= value <= SEED[1], (key, value)
        if key in RULES:
            lo, hi = RULES[key]
            assert lo <= value and (hi is None or value <= hi), (key, value)
    if name == "sampling":
        assert cfg.steps * cfg.strength >= 1 and cfg.scheduler in SCHEDULERS
    for key, value in cfg.gate.items() if name == "register" else ():
        assert isinstance(value, str) if key == "method" else not math.isnan(value), (key, value)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5, 1.0, 1e300, 2**63, -(2**63), 10**400]),
    st.text(max_size=6),
    st.sampled_from(["5e-5", "nan", "inf", "true", "", "8", "fp32", "ddim", "masked", "skin"]),
    st.lists(st.one_of(st.integers(-2, 2), st.text(max_size=3), st.lists(st.integers(), max_size=1)), max_size=3),
    st.dictionaries(st.text(string.ascii_lowercase, max_size=4), st.integers(), max_size=2),
)


def near(value):
    """Values next to a valid one: its negative, zero, NaN, a huge multiple, the wrong type."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return VALUES
    return st.sampled_from([-value, 0, value * 10**9, value + 0.5, float(value), str(value), math.nan, -1, 1, 2])


@st.composite
def mutations(draw):
    """(section, params with one change, the key the change is at)."""
    name = draw(st.sampled_from(sorted(CONFIGS)))
    params = json.loads(json.dumps(PARAMS))  # a deep copy
    section = params[name]
    kind = draw(st.sampled_from(["set", "set", "set", "nested", "delete", "add", "whole"]))
    nested = [k for k, v in section.items() if isinstance(v, dict)]
    if kind == "whole":
        params[name] = draw(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
        return name, params, name
    if kind == "nested" and nested:
        outer = draw(st.sampled_from(nested))
        section = section[outer]
    key = draw(st.sampled_from(sorted(section)))
    if kind == "delete":
        del section[key]
    elif kind == "add":
        key = draw(st.one_of(st.text(string.ascii_lowercase + "_", min_size=1, max_size=8), st.integers(0, 9)))
        assume(key not in section)
        section[key] = draw(VALUES)
    else:
        section[key] = draw(st.one_of(VALUES, near(section[key])))
    return name, params, str(key)


@given(mutations())
@fuzz(3000)
def test_params_sections_refuse_bad_values_naming_the_key(case):
    from stages.common import section

    count("c: params.yaml sections")
    name, params, key = case
    try:
        cfg = section(params, name, CONFIGS[name])
    except SystemExit as e:
        assert key in str(e), (key, str(e))
        return
    assert_valid(name, cfg)


@pytest.mark.parametrize(
    "name, key, value, reason",
    [
        ("train", "lr_kv", math.nan, "train.lr_kv must be a finite number"),
        ("train", "lr_adapter", -1e-4, "train.lr_adapter must be a number >= 0"),
        ("train", "lr_kv", "5e-5", "YAML reads 5e-5 as text"),
        ("train", "adam_beta2", 1.0, r"train.adam_beta2 must be in \[0, 1\)"),
        ("train", "lr_scheduler", "cosine_annealing", "train.lr_scheduler must be one of"),
        ("train", "seed", -1, "train.seed must be a whole number from 0"),
        ("sampling", "sigma", -3.0, "section 'sampling': sigma must be a number from 0"),
        ("sampling", "sigma", math.nan, "section 'sampling': sigma must be a finite number"),
        ("masks", "latent_factor", 0, "masks.latent_factor must be a whole number >= 1"),
        ("masks", "max_unusable_fraction", 2.0, "masks.max_unusable_fraction must be a number from 0 to 1"),
        ("sampling", "steps", 0, "section 'sampling': steps must be a whole number from 1 to 200"),
        ("sampling", "steps", 10**6, "section 'sampling': steps must be a whole number from 1 to 200"),
        ("sampling", "guidance_scale", math.inf, "section 'sampling': guidance_scale must be a finite number"),
        ("sampling", "scheduler", "euler", "section 'sampling': scheduler must be one of"),
        ("evaluate", "dtype", "fp8", "evaluate.dtype must be one of"),
        ("latents", "precision", "fp64", "latents.precision must be one of"),
        ("latents", "shard_size", 0, "latents.shard_size must be a whole number >= 1"),
        ("split", "max_malformed_fraction", math.nan, "split.max_malformed_fraction must be a finite number"),
        ("model", "seed", 2**64, "model.seed must be a whole number from 0"),
        ("register", "gate", {"method": "ours", "fid_max_increase": math.nan}, "register.gate.fid_max_increase"),
    ],
)
def test_values_that_used_to_pass_silently(name, key, value, reason):
    """Each of these was accepted before (a NaN learning rate trained nothing, a negative sigma or a NaN
    fraction passed, steps 0 of the evaluation or a typo'd scheduler failed only after the models loaded)."""
    from stages.common import section

    params = json.loads(json.dumps(PARAMS))
    params[name][key] = value
    with pytest.raises(SystemExit, match=reason):
        section(params, name, CONFIGS[name])


def test_the_lr_scheduler_names_are_diffusers():
    from diffusers.optimization import SchedulerType

    from facepaint.method.train import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) == {s.value for s in SchedulerType}


# ============================================================ (d) options of every interface


def option_values():
    return st.one_of(VALUES, st.integers(-5, 2000), st.floats(-5, 200), st.sampled_from([0.5, 1, 2**63, 2**64]))


def user_values():
    """What a user types or sends: the values themselves (JSON, a form's floats) or their text."""
    return st.one_of(
        option_values(), option_values().map(str), st.sampled_from(["30.0", " 7 ", "False", "0,2", "dpm", "largest"])
    )


SAMPLING_NAMES = tuple(f.name for f in dataclasses.fields(SamplingOptions))
CHOICE_NAMES = tuple(f.name for f in dataclasses.fields(EditChoices))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def assert_options_valid(o: SamplingOptions, c: EditChoices | None = None) -> None:
    """Options an edit can run with: whole steps of which at least one runs, finite numbers in their ranges,
    a known scheduler, switches that are bools, a valid face selection."""
    assert isinstance(o.steps, int) and not isinstance(o.steps, bool) and 1 <= o.steps <= MAX_STEPS
    assert is_number(o.strength) and 0 < o.strength <= 1 and o.steps * o.strength >= 1
    assert is_number(o.guidance_scale) and 0 <= o.guidance_scale <= MAX_GUIDANCE
    assert is_number(o.sigma) and 0 <= o.sigma <= MAX_SIGMA
    assert o.scheduler in SCHEDULERS and isinstance(o.negative_prompt, str)
    if c is None:
        return
    assert isinstance(c.seed, int) and not isinstance(c.seed, bool) and 0 <= c.seed <= MAX_SEED
    assert isinstance(c.blend, (bool, np.bool_)) and isinstance(c.watermark, (bool, np.bool_))
    assert is_number(c.min_face) and 0 <= c.min_face <= MAX_MIN_FACE
    assert parse_selection(c.faces) in ("all", "largest") or all(i >= 0 for i in parse_selection(c.faces))


@given(st.sampled_from(SAMPLING_NAMES), option_values())
@fuzz(1000)
def test_sampling_options(name, value):
    """The Python API's SamplingOptions: a value of another type is a TypeError, one out of range a ValueError,
    each naming the option; an accepted one can be sampled with."""
    count("d: SamplingOptions")
    try:
        o = SamplingOptions(**{name: value})
    except (TypeError, ValueError) as e:
        assert name in str(e), (name, value, str(e))
        return
    assert_options_valid(o)


@given(st.sampled_from(CHOICE_NAMES), option_values())
@fuzz(1000)
def test_edit_choices(name, value):
    count("d: EditChoices")
    try:
        c = EditChoices(**{name: value})
    except ValueError as e:
        assert name in str(e), (name, value, str(e))
        return
    assert_options_valid(SamplingOptions(), c)


@given(st.dictionaries(st.sampled_from(SAMPLING_NAMES + CHOICE_NAMES), user_values(), min_size=1, max_size=3))
@fuzz(1500)
def test_parse_edit_options(raw):
    """The one parser of user values (the CLI, the web app, the pyfunc): a ValueError naming one of the given
    options, or options an edit can run with, holding what was given."""
    count("d: parse_edit_options")
    try:
        o, c = parse_edit_options(raw)
    except ValueError as e:
        assert any(name in str(e) for name in raw), (raw, str(e))
        return
    assert_options_valid(o, c)
    for name, value in raw.items():
        got = getattr(o if name in SAMPLING_NAMES else c, name)
        if isinstance(got, bool) or name in ("negative_prompt", "faces", "scheduler"):
            continue
        assert got == float(value), (name, value, got)  # a number is the number given (its text read as one)


@pytest.mark.parametrize(
    "cls, changes, reason",
    [
        (SamplingOptions, {"steps": math.nan}, "steps must be a whole number"),
        (SamplingOptions, {"steps": 2.5}, "steps must be a whole number"),
        (SamplingOptions, {"steps": 201}, "steps must be a whole number from 1 to 200"),
        (SamplingOptions, {"steps": -3}, r"steps must be a whole number from 1 to 200, got -3"),
        (SamplingOptions, {"steps": 4, "strength": 0.2}, r"steps x strength must be at least 1"),
        (SamplingOptions, {"guidance_scale": math.inf}, "guidance_scale must be a finite number"),
        (SamplingOptions, {"guidance_scale": -1.0}, "guidance_scale must be a number from 0 to 100"),
        (SamplingOptions, {"guidance_scale": 101.0}, "guidance_scale must be a number from 0 to 100"),
        (SamplingOptions, {"strength": math.nan}, "strength must be a finite number"),
        (SamplingOptions, {"strength": -1.0}, r"strength must be in \(0, 1\]"),
        (SamplingOptions, {"sigma": -3.0}, "sigma must be a number from 0 to 100"),
        (SamplingOptions, {"sigma": math.inf}, "sigma must be a finite number"),
        (SamplingOptions, {"scheduler": "euler"}, "scheduler must be one of"),
        (SamplingOptions, {"negative_prompt": None}, "negative_prompt must be a string"),
        (EditChoices, {"seed": -5}, "seed must be a whole number from 0 to 9223372036854775807"),
        (EditChoices, {"seed": 2**63}, "seed must be a whole number from 0"),
        (EditChoices, {"seed": 1.5}, "seed must be a whole number"),
        (EditChoices, {"blend": "false"}, "blend must be True or False"),
        (EditChoices, {"watermark": 1}, "watermark must be True or False"),
        (EditChoices, {"min_face": math.nan}, "min_face must be a finite number"),
        (EditChoices, {"min_face": "64"}, "min_face must be a number"),  # text is the parser's to read
        (EditChoices, {"faces": "0,x"}, "faces must be 'all', 'largest' or indices"),
        (EditChoices, {"faces": [1, 1]}, "faces must be distinct indices >= 0"),
        (EditChoices, {"faces": None}, "faces must be 'all', 'largest' or indices"),  # not a TypeError of list()
        (EditChoices, {"faces": 3}, "faces must be 'all', 'largest' or indices"),
    ],
)
def test_option_messages(cls, changes, reason):
    with pytest.raises((TypeError, ValueError), match=reason):
        cls(**changes)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"steps": "2.5"}, "steps must be a whole number, got '2.5'"),
        ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
        ({"steps": "nan"}, "steps must be a whole number"),
        ({"steps": "many"}, "steps must be a whole number, got 'many'"),
        ({"steps": "5000"}, "steps must be a whole number from 1 to 200"),
        ({"guidance_scale": "inf"}, "guidance_scale must be a finite number"),
        ({"sigma": "-1"}, "sigma must be a number from 0 to 100"),
        ({"scheduler": "euler"}, "scheduler must be one of"),
        ({"seed": "-5"}, "seed must be a whole number from 0"),
        ({"blend": "maybe"}, "blend must be true or false, got 'maybe'"),
        ({"watermark": 2}, "watermark must be true or false"),
        ({"min_face": "nan"}, "min_face must be a finite number"),
        ({"faces": 3}, "faces must be a string or a list"),
        ({"faces": "0,x"}, "faces must be 'all', 'largest' or indices"),
        ({"padding": 0.5}, r"unknown option\(s\) \['padding'\]"),
    ],
)
def test_parse_edit_options_messages(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_edit_options(raw)


def test_parse_edit_options_reads_text_and_form_values():
    o, c = parse_edit_options(
        {"steps": "30", "guidance_scale": 5, "sigma": "8", "seed": 7.0, "blend": "false", "watermark": "on"}
    )
    assert (o.steps, o.guidance_scale, o.sigma, c.seed, c.blend, c.watermark) == (30, 5.0, 8.0, 7, False, True)
    assert type(o.steps) is int and type(o.guidance_scale) is float and type(c.seed) is int
    o, c = parse_edit_options({"steps": 30.0, "min_face": "64", "faces": " 0,2 "})  # a web form's numbers
    assert (o.steps, c.min_face, parse_selection(c.faces)) == (30, 64.0, [0, 2])
    assert parse_edit_options({}) == (SamplingOptions(), EditChoices())


@given(st.sampled_from(["padding", "detector"]), option_values())
@fuzz(400)
def test_face_helper_options(name, value):
    count("d: FaceHelper padding/detector")
    try:
        helper = FaceHelper(64, ("skin",), **{name: value})
    except ValueError as e:
        assert name in str(e), (name, value, str(e))
        return
    assert is_number(helper.padding) and 0 <= helper.padding <= MAX_PADDING
    assert helper.detector_kind in DETECTORS


def stub_editor() -> FaceEditor:
    """A FaceEditor over an inpainter and an artifact as far as FaceEditor.__init__ reads them (no model; a tiny
    base model, which ships no safety checker), whose helper fails the test if it is asked to find a face."""
    from facepaint.method.models import ModelConfig

    conditions = SimpleNamespace(
        resolution=64, adapter_scale=0.3, parts=("skin",), model=ModelConfig("tiny", "", None, None, 0)
    )
    inpainter = SimpleNamespace(
        resolution=64, adapter_scale=0.3, device="cpu", pipe=SimpleNamespace(vae=SimpleNamespace(dtype=None))
    )

    class NoHelper:
        def prepare(self, *a, **k):
            raise AssertionError("the helper ran before the options were checked")

    return FaceEditor(inpainter, SimpleNamespace(conditions=conditions), helper=NoHelper())


def test_options_are_checked_before_the_artifact_loads_or_a_face_is_found(tmp_path):
    for name, value in (("padding", math.nan), ("padding", 1e9), ("padding", "0.5"), ("detector", "dlib")):
        with pytest.raises(ValueError, match=name):
            FaceEditor.from_artifact(tmp_path / "no-model", **{name: value})
    editor, photo = stub_editor(), np.zeros((8, 8, 3), np.uint8)
    for name, value in (("sigma", -3.0), ("min_face", math.inf), ("steps", 0), ("faces", "x"), ("seed", -1)):
        with pytest.raises(ValueError, match=name):
            editor.edit(photo, "a face", **{name: value})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['padding'\]"):
        editor.edit(photo, "a face", padding=0.5)  # the helper's, not an edit's
    with pytest.raises(ValueError, match="sigma"):
        split_options({"sigma": math.nan}, SamplingOptions(steps=10))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "me.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    return path


def cli_edit(photo, tmp_path, *options):
    """`facepaint edit` of `photo` with a model that does not exist, and `options`."""
    from facepaint.apps.cli import main

    out = tmp_path / "o.png"
    return main(
        ["edit", str(photo), "--prompt", "a face", "--out", str(out), "--model", str(tmp_path / "nope"), *options]
    )


@pytest.mark.parametrize(
    "flag, value, names",
    [
        ("--steps", "nan", "steps must be a whole number"),
        ("--steps", "2.5", "steps must be a whole number"),
        ("--steps", "many", "steps must be a whole number"),
        ("--steps", "5000", "steps must be a whole number from 1 to 200"),
        ("--guidance-scale", "inf", "guidance_scale must be a finite number"),
        ("--guidance-scale", "-2", "guidance_scale must be a number from 0"),
        ("--strength", "-1", "strength must be in"),
        ("--strength", "nan", "strength must be a finite number"),
        ("--seed", "-5", "seed must be a whole number from 0"),
        ("--seed", "nan", "seed must be a whole number"),
        ("--sigma", "-3", "sigma must be a number from 0"),
        ("--sigma", "inf", "sigma must be a finite number"),
        ("--min-face", "inf", "min_face must be a finite number"),
        ("--min-face", "nan", "min_face must be a finite number"),
        ("--faces", "0,x", "faces must be 'all', 'largest' or indices"),
        ("--padding", "nan", "padding must be a finite number"),
        ("--padding", "-1", "padding must be a number from 0"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
    ],
)
def test_cli_refuses_bad_options_before_loading_the_model(photo, tmp_path, capsys, flag, value, names):
    """One `error:` line naming the option (without its dashes when parse_edit_options read it: "steps must
    be ..."), not the nonexistent model, exit status 1, in well under a second."""
    start = time.perf_counter()
    assert cli_edit(photo, tmp_path, f"{flag}={value}") == 1
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and names in err[0], err
    assert "nope" not in err[0] and "artifact" not in err[0], err
    assert elapsed < 0.5, elapsed
    # the same command with the option's default goes on, to the model
    assert cli_edit(photo, tmp_path) == 1
    assert "nope" in capsys.readouterr().err


def test_cli_usage_errors_and_detect(photo, tmp_path, capsys):
    """Options with a fixed type or choices are argparse's (usage, exit status 2); `detect --min-face` goes
    through parse_edit_options like `edit`'s."""
    from facepaint.apps.cli import main

    for options, message in (
        (["--batch-size", "2.5"], "--batch-size: invalid int value: '2.5'"),
        (["--scheduler", "euler"], "--scheduler: invalid choice: 'euler'"),
        (["--padding", "wide"], "--padding: invalid float value: 'wide'"),
    ):
        with pytest.raises(SystemExit) as e:
            cli_edit(photo, tmp_path, *options)
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert main(["detect", str(photo), "--min-face", "nan"]) == 1
    assert capsys.readouterr().err.startswith("error: min_face must be a finite number")


class StubEditor:
    """The pyfunc model's editor, recording what it is asked (no model)."""

    def __init__(self):
        self.calls = []

    def edit(self, image, prompt, *, mask=None, options=None, **choices):
        self.calls.append((options, choices))
        return SimpleNamespace(
            image=np.zeros((4, 4, 3), np.uint8), provenance={"options": repr(options)}, png=lambda: b"png bytes"
        )


@pytest.fixture(scope="module")
def pyfunc():
    from tracking.pyfunc_model import FacepaintModel

    model = FacepaintModel()
    frame = pd.DataFrame({"image": [encode(make_image("RGB", (8, 8), 0), "PNG")], "prompt": ["a face"]})

    def predict(params):
        model.editor = StubEditor()
        model.predict(None, frame, params=params)
        return model.editor.calls

    return predict


@given(st.sampled_from(SAMPLING_NAMES + CHOICE_NAMES), user_values())
@fuzz(600)
def test_pyfunc_params(pyfunc, key, value):
    """A bad param is refused (MlflowException naming it) before any row is edited; an accepted one reaches
    the editor as a valid option of its type."""
    from mlflow.exceptions import MlflowException

    count("d: pyfunc params")
    try:
        calls = pyfunc({key: value})
    except MlflowException as e:
        assert key in e.message, (key, value, e.message)
        return
    ((options, choices),) = calls
    assert isinstance(options, SamplingOptions) and set(choices) == set(CHOICE_NAMES)
    assert_options_valid(options, EditChoices(**choices))


def test_pyfunc_params_cast_and_refuse(pyfunc):
    from mlflow.exceptions import MlflowException

    params = {"steps": "3", "seed": 7.0, "blend": "false", "guidance_scale": "5", "sigma": "8", "scheduler": "dpm"}
    ((options, choices),) = pyfunc({**params, "some_other_param": 1})  # MLflow's own params are not the editor's
    assert (options.steps, options.guidance_scale, options.sigma, options.scheduler) == (3, 5.0, 8.0, "dpm")
    assert (choices["seed"], choices["blend"], choices["faces"]) == (7, False, "all")
    for params, reason in (
        ({"steps": "nan"}, "steps must be a whole number"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"guidance_scale": float("inf")}, "guidance_scale must be a finite number"),
        ({"strength": -1}, "strength must be in"),
        ({"seed": -5}, "seed must be a whole number from 0"),
        ({"sigma": "-1"}, "sigma must be a number from 0"),
        ({"scheduler": "euler"}, "scheduler must be one of"),
        ({"min_face": float("nan")}, "min_face must be a finite number"),
        ({"faces": "0,x"}, "faces must be"),
        ({"blend": "maybe"}, "blend must be true or false"),
    ):
        with pytest.raises(MlflowException, match=reason):
            pyfunc(params)


# ====================================================================================== counts


def test_zz_example_counts():
    """How many examples each property ran (this file's properties; run with -s to read them)."""
    for name, n in sorted(EXAMPLES.items()):
        print(f"{name}: {n} examples")
    assert all(n >= 10 for n in EXAMPLES.values()), EXAMPLES
