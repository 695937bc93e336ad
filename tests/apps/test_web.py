"""The web app (facepaint/apps/web.py): its checks without a server, then the served app driven by a real browser
(Playwright on Debian's chromium: a fixture portrait and its mask uploaded, a brush stroke drawn, bad uploads
answered in the page) and through its API (gradio_client)."""

from __future__ import annotations

import math
import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import textured

CHROMIUM = Path(os.environ.get("FACEPAINT_CHROMIUM", "/usr/bin/chromium"))
FACE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip", "mouth")
PROMPT = "a photo of a smiling man with a beard"


# ------------------------------------------------------------------------------------ without a server


def test_values_are_checked_naming_the_option_before_any_model_call():
    """The page's values go through the one parser of user values (`edit_options` -> parse_edit_options): form
    floats become whole numbers where they must be, and a value that cannot be used is refused naming its option
    (without dashes), as SamplingOptions and EditChoices limit it."""
    from facepaint.apps.web import EditRequest, edit_options
    from facepaint.editing.editor import EditChoices
    from facepaint.method.options import SamplingOptions

    options, choices = edit_options({"seed": 3.0, "steps": 2.0, "guidance_scale": 7.5, "strength": 1, "min_face": 64})
    assert options == SamplingOptions(steps=2, guidance_scale=7.5, strength=1.0)
    assert choices == EditChoices(seed=3, min_face=64.0)
    assert type(options.steps) is int and type(choices.seed) is int
    bad = {
        "steps must be a whole number": {"steps": math.nan},
        "steps must be a whole number, got 2.5": {"steps": 2.5},
        "steps must be a whole number, got 'many'": {"steps": "many"},
        "steps x strength must be at least 1": {"steps": 2, "strength": 0.2},
        "seed must be a whole number from 0": {"seed": -1},
        "guidance_scale must be a finite number": {"guidance_scale": math.inf},
        "guidance_scale must be a number from 0 to 100": {"guidance_scale": 1e9},  # SamplingOptions' limit
        "strength must be in (0, 1]": {"strength": 1.5},
        "min_face must be a number from 0": {"min_face": -5},
        "faces must be 'all', 'largest' or indices": {"faces": "0,x"},
        "blend must be true or false": {"blend": "maybe"},
        "unknown option(s) ['speed']": {"speed": 2},
    }
    for message, values in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            edit_options(values)

    def request(**changes):
        fields = dict(
            photo_path=None, editor_value=None, mask_path=None, faces=" largest ", min_face=64.0, prompt="a face"
        )
        fields |= dict(negative_prompt=" ugly ", seed=3.0, steps=2.0, guidance_scale=7.5, strength=1.0, blend=1)
        return EditRequest(**{**fields, "watermark": 0, **changes})

    options, choices = edit_options(request().options())
    assert (options.steps, options.negative_prompt) == (2, "ugly")  # a whole number; the text stripped
    assert (choices.faces, choices.blend, choices.watermark) == ("largest", True, False)
    for name in ("min_face", "seed", "steps", "guidance_scale", "strength"):  # an emptied number box
        with pytest.raises(ValueError, match=f"{name} is missing: give a number"):
            request(**{name: None}).options()


def test_the_app_limits_steps_to_200_before_loading_a_model(tmp_path):
    """Every entry point's limit (facepaint.common.limits: 200 denoising steps), which an operator may lower
    (`AppConfig.max_steps`), refused in `edit_options` and by `App.edit` before any model is loaded."""
    from facepaint.apps.web import MAX_STEPS, App, AppConfig, EditRequest, _editors, edit_options
    from facepaint.method.options import MAX_STEPS as SAMPLING_MAX_STEPS

    assert MAX_STEPS == AppConfig().max_steps == 200 == SAMPLING_MAX_STEPS
    assert edit_options({"steps": 200})[0].steps == 200
    for max_steps in (MAX_STEPS, 300):  # not raised above the limit of every entry point
        with pytest.raises(ValueError, match=re.escape("steps must be a whole number from 1 to 200, got 201")):
            edit_options({"steps": 201}, max_steps=max_steps)
    with pytest.raises(ValueError, match="steps must be from 1 to 10 in this app, got 11"):
        edit_options({"steps": 11}, max_steps=10)

    model = tmp_path / "model"  # an empty directory: any model load would fail
    model.mkdir()
    loaded = dict(_editors)
    for max_steps, steps, said in ((MAX_STEPS, 201, "from 1 to 200, got 201"), (10, 11, "from 1 to 10 in this app")):
        app = App(AppConfig(str(model), examples=None, releases=False, workdir=str(tmp_path), max_steps=max_steps))
        r = EditRequest("photo.png", None, None, "all", 64, PROMPT, "", 0, steps, 7.5, 1.0, True, False)
        with pytest.raises(ValueError, match=said):
            app.edit(r)
    r = EditRequest("photo.png", None, None, "all", 64, "x" * 2001, "", 0, 10, 7.5, 1.0, True, False)
    with pytest.raises(ValueError, match="prompt is 2,001 characters, over the limit of 2,000"):
        app.edit(r)
    assert _editors == loaded  # refused before any editor was loaded


def test_the_mask_editors_images_are_checked_before_gradio_decodes_them(tmp_path, monkeypatch):
    """A layer (or background) of the mask editor's value over the pixel limit, sent as a file or as the
    component's blob bytes, is refused from its header: Gradio's decoder never sees it."""
    import gradio as gr
    from gradio.components.image_editor import EditorData, EditorDataBlobs
    from gradio.data_classes import FileData

    from facepaint.apps.web import readable_layers

    Image.new("1", (10_000, 10_000)).save(tmp_path / "layer.png")  # 100 megapixels in a few KB
    Image.new("RGBA", (64, 64)).save(tmp_path / "ok.png")
    editor = readable_layers(gr.ImageEditor(type="numpy", image_mode="RGBA"))
    decoded = []
    inner = editor.convert_and_format_image
    monkeypatch.setattr(editor, "convert_and_format_image", lambda f, **k: decoded.append(f) or inner(f, **k))
    ok, bomb = FileData(path=str(tmp_path / "ok.png")), FileData(path=str(tmp_path / "layer.png"))
    with pytest.raises(gr.Error, match=r"mask editor's layer 1 cannot be used: 10000x10000 \(100\.0 megapixels\)"):
        editor.preprocess(EditorData(background=ok, layers=[ok, bomb]))
    editor.blob_storage["b"] = EditorDataBlobs(
        background=None, layers=[(tmp_path / "layer.png").read_bytes()], composite=None
    )
    with pytest.raises(gr.Error, match=r"mask editor's layer 0 cannot be used: 10000x10000"):
        editor.preprocess(EditorData(id="b"))
    assert decoded == []  # Gradio's decoder saw nothing
    value = editor.preprocess(EditorData(background=ok, layers=[ok]))
    assert value["layers"][0].shape == (64, 64, 4) and decoded


def test_the_file_route_refuses_urls_before_gradio_fetches_them():
    """Gradio's file route asked for an http(s) URL (plain, percent-encoded, any case) answers 403 from
    LocalFilesOnly, so Gradio never fetches it (a DNS-over-HTTPS lookup for a private host); other paths pass."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from facepaint.apps.web import LocalFilesOnly

    reached = []

    def file_route(request):
        reached.append(request.path_params["rest"])
        return PlainTextResponse("served")

    app = Starlette(routes=[Route("/gradio_api/{rest:path}", file_route)], middleware=[Middleware(LocalFilesOnly)])
    client = TestClient(app)
    for target in ("http://10.0.0.1/x.png", "http%3A//127.0.0.1%3A9/x.png", "HTTPS://example.com/x", "/http://a/b"):
        answer = client.get(f"/gradio_api/file={target}")
        assert answer.status_code == 403 and "its own files only" in answer.text, target
    assert reached == []
    assert client.get("/gradio_api/file=/tmp/gradio/abc/result.png").text == "served"
    assert client.get("/gradio_api/info").text == "served"


def test_the_mask_editor_canvas_maps_back_to_the_photo():
    """The photo is scaled into the editor's square canvas and a painted layer scaled back: exactly for a photo
    up to the canvas's size, at the canvas's resolution above it; a mask the app put there (MaskStart) is used
    at full resolution where it was not corrected; a layer of the photo's own size is taken as it is."""
    from facepaint.apps.web import EDITOR_CANVAS, MaskStart, editor_mask, mask_editor_value, mask_layer
    from facepaint.method.face_helper import EditError

    for h, w in ((512, 512), (300, 500), (700, 333), (1000, 37), (2000, 3000)):
        m = np.zeros((h, w), bool)
        m[h // 4 : h // 2, w // 3 : 2 * w // 3] = True
        value, on_canvas = mask_editor_value(np.zeros((h, w, 3), np.uint8), m)
        assert value["background"].shape == (EDITOR_CANVAS, EDITOR_CANVAS, 3)
        drawn, source = editor_mask(value, (w, h))
        assert source == "drawn in the app"
        if max(h, w) <= EDITOR_CANVAS:
            assert np.array_equal(drawn, m), (h, w)
        else:
            assert (drawn != m).mean() < 0.002 and (drawn & m).sum() / (drawn | m).sum() > 0.99
        start = MaskStart(on_canvas, m, "upload m.png")
        assert editor_mask(value, (w, h), start) == (start.mask, "upload m.png")  # as given, full resolution
        auto = MaskStart(on_canvas, m, "bisenet")
        assert editor_mask(value, (w, h), auto) == (None, "bisenet")  # BiSeNet's own, per face
        # a correction: the top half of the mask erased on the canvas, the rest kept exactly
        corrected = on_canvas.copy()
        ys = np.nonzero(corrected.any(axis=1))[0]
        corrected[: (ys[0] + ys[-1]) // 2] = False
        fixed, source = editor_mask({"layers": [mask_layer(corrected)]}, (w, h), start)
        assert source == "upload m.png, corrected in the app"
        assert fixed.sum() < 0.6 * m.sum() and not (fixed & ~m).any()
        assert np.array_equal(fixed[h // 2 - h // 16 :], m[h // 2 - h // 16 :])
    assert editor_mask(mask_editor_value(np.zeros((40, 60, 3), np.uint8))[0], (60, 40)) is None  # nothing painted
    own = np.zeros((40, 60, 4), np.uint8)
    own[10:20, 5:25] = 255
    assert editor_mask({"layers": [own]}, (120, 80))[0].sum() == 20 * 40
    with pytest.raises(EditError, match="aspect ratio"):
        editor_mask({"layers": [own]}, (80, 80))


def test_uploads_that_cannot_be_used_say_why(tmp_path):
    from facepaint.apps.web import read_upload
    from facepaint.common.images import ImageError

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match=r"photo notes\.png: corrupt or unreadable image"):
        read_upload(text, 10**6)
    Image.fromarray(textured(64, 64)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: corrupt or unreadable image"):
        read_upload(tmp_path / "cut.png", 10**6)
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"3000x2000 \(6\.0 megapixels\), over this app's limit of 1 megapixels"):
        read_upload(tmp_path / "big.png", 10**6)
    photo, name, _ = read_upload(tmp_path / "big.png", 10**7)
    assert photo.shape == (2000, 3000, 3) and name == "big.png"


def test_without_parser_weights_the_automatic_mask_is_the_face_mesh(tiny_artifact, monkeypatch, tmp_path):
    """No BiSeNet weights anywhere: the page says the automatic mask is the face mesh's; `/detect` on the
    public-domain astronaut puts it into the mask editor, and edited uncorrected the edit runs the mesh mask
    itself (provenance mask "mesh")."""
    from facepaint.apps import web
    from facepaint.apps.web import App, AppConfig, EditRequest
    from tests.method import astronaut

    monkeypatch.setattr(web, "default_bisenet_path", lambda: tmp_path / "absent.pth")
    monkeypatch.setattr("facepaint.method.face_helper.default_bisenet_path", lambda: tmp_path / "absent.pth")
    app = App(AppConfig(str(tiny_artifact.path), examples=None, releases=False, workdir=str(tmp_path)))
    assert app.auto_mask == "mesh" and app.mask_notice.startswith("Automatic face mask: the face mesh")
    assert "demo model" in app.demo_notice and "edits are noise" in app.demo_notice  # random weights: said so
    Image.fromarray(astronaut.photo()).save(tmp_path / "astronaut.png")
    overlay, value, faces, status, start = app.detect(tmp_path / "astronaut.png")
    assert "The automatic mask is in green" in status and len(faces) == 1
    assert start.source == "mesh" and start.mask[astronaut.face_mask()].mean() > 0.95
    request = EditRequest(tmp_path / "astronaut.png", value, None, "all", 64, PROMPT, "", 0, 2, 7.5, 1, True, False,
                          start=start)  # fmt: skip
    _, png, provenance, status = app.edit(request)
    assert provenance["mask"] == "mesh" and Path(png).is_file() and "Edited face(s) 0" in status


@pytest.mark.fixture
def test_the_automatic_mask_goes_to_the_editor_and_is_used_as_bisenet(
    tiny_artifact, random_bisenet_weights, fixture_root, tmp_path
):
    """With BiSeNet weights (random ones here) `/detect` puts the parser's mask into the mask editor; edited
    uncorrected, the edit runs BiSeNet per face itself (provenance mask "bisenet")."""
    from facepaint.apps.web import App, AppConfig, EditRequest

    weights = str(random_bisenet_weights)
    app = App(AppConfig(str(tiny_artifact.path), bisenet_weights=weights, examples=None, releases=False))
    assert app.mask_notice.startswith("Automatic face mask: BiSeNet")
    photo = sorted((fixture_root / "CelebA-HQ-img").glob("*.jpg"))[0]
    overlay, value, faces, status, start = app.detect(photo)
    assert "The automatic mask is in green" in status and len(faces) == 1
    assert start.source == "bisenet" and start.mask.any() and len(value["layers"]) == 1
    assert overlay.shape[:2] == start.mask.shape
    request = EditRequest(photo, value, None, "all", 64, PROMPT, "", 0, 2, 7.5, 1, True, False, start=start)
    _, png, provenance, status = app.edit(request)
    assert provenance["mask"] == "bisenet" and Path(png).is_file() and "Edited face(s) 0" in status


# --------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_artifact, tmp_path_factory):
    """The app on a free local port, served from a thread of this process, with the tiny trained artifact."""
    from facepaint.apps.web import launch

    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    port = free_port()
    demo = launch(str(tiny_artifact.path), port=port, examples=None, block=False)
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()
    mp.undo()


def artifacts_dir(tmp_path) -> Path:
    """Where a test leaves what a person may want to look at: $FACEPAINT_TEST_ARTIFACTS, else tmp_path."""
    out = Path(os.environ.get("FACEPAINT_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser():
    """Headless Debian chromium under Playwright (Playwright's own browser download cannot run here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.is_file():
        pytest.skip(
            f"no chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does), or set FACEPAINT_CHROMIUM"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def face_mask(fixture_root: Path, image_id: int) -> np.ndarray:
    """The annotated face (skin, brows, eyes, nose, lips) of a fixture portrait."""
    folder = fixture_root / "CelebAMask-HQ-mask-anno" / str(image_id // 2000)
    parts = [folder / f"{image_id:05d}_{part}.png" for part in FACE_PARTS]
    return np.any([np.asarray(Image.open(p).convert("L")) >= 128 for p in parts if p.is_file()], axis=0)


def wait_status(page, text: str, timeout_s: float = 120) -> str:
    page.wait_for_function(
        "t => document.querySelector('#status').innerText.includes(t)", arg=text, timeout=timeout_s * 1000
    )
    return page.locator("#status").inner_text()


def editor_stroke(page, points):
    """Draw one brush stroke through photo pixels `points` in the mask editor (a square photo: it fills the
    editor's square canvas, shown centred at the editor's zoom)."""
    import re

    from facepaint.apps.web import EDITOR_CANVAS

    editor = page.locator("#mask-editor")
    zoom = float(re.search(r"(\d+)%", editor.inner_text()).group(1)) / 100
    box = editor.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    k = EDITOR_CANVAS / 512 * zoom

    def screen(x, y):
        return cx + (x - 256) * k, cy + (y - 256) * k

    page.mouse.move(*screen(*points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*screen(*p), steps=4)
    page.mouse.up()


def open_options(page):
    """Open the Options accordion (negative prompt, faces, seed, steps, ...) unless it is open."""
    if not page.locator("#steps").is_visible():
        page.locator("#options").get_by_text("Options", exact=True).click()
        page.locator("#steps input").wait_for(state="visible")
        page.wait_for_timeout(500)  # its components mounted with their values before a test fills them


def download(page, path: Path) -> Path:
    with page.expect_download() as d:
        page.locator("#result-file a").first.click()
    d.value.save_as(path)
    return path


@pytest.mark.fixture
def test_the_page_edits_a_photo_in_a_browser(server, browser, fixture_root, tiny_artifact, tmp_path):
    """Bad uploads are answered in the page and the next good one works; a portrait, its mask uploaded, a
    prompt, 2 steps: the downloaded PNG has the upload's size, every pixel outside the soft mask is the
    upload's (bit-identical: the same edit recomputed here), and its provenance names the prompt. Then a
    brush stroke above the face widens the mask: the second edit changes the pixels under the stroke."""
    from facepaint.apps.web import editor_for
    from facepaint.editing.provenance import read_provenance

    url, _ = server
    image_id = int((fixture_root / "ids.txt").read_text().split()[0])
    photo_path = fixture_root / "CelebA-HQ-img" / f"{image_id}.jpg"
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    h, w = photo.shape[:2]
    m = face_mask(fixture_root, image_id)
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    Image.fromarray(m[: h // 2].astype(np.uint8) * 255).save(tmp_path / "half-mask.png")
    (tmp_path / "notes.png").write_text("this is a text file, not a PNG\n")
    Image.fromarray(photo).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(120_000)
    page.goto(url)
    assert "its edits are noise" in page.locator("#demo-notice").inner_text()  # the tiny test model: random
    notice = page.locator("#mask-notice").inner_text()
    assert "Automatic face mask: the face mesh" in notice and "--bisenet-weights" in notice

    # 1. bad uploads: a clear message in the page, no traceback; the server goes on serving
    upload = page.locator("#photo input[type=file]")
    upload.set_input_files(tmp_path / "notes.png")
    status = wait_status(page, "Cannot use this photo")
    assert "notes.png: corrupt or unreadable image" in status and "Traceback" not in status
    upload.set_input_files(tmp_path / "cut.png")
    status = wait_status(page, "cut.png: corrupt or unreadable image")
    assert "truncated" in status, status
    assert page.locator(".toast-body").count() == 0  # the status says it, no pop-up besides

    # 2. the portrait: its face found and numbered; a mask of the wrong aspect ratio refused, the right one loaded
    upload.set_input_files(photo_path)
    status = wait_status(page, "1 face(s)")
    assert f"{photo_path.name}: {w}x{h}" in status
    page.locator("#mask-file input[type=file]").set_input_files(tmp_path / "half-mask.png")
    status = wait_status(page, "Cannot use this mask")
    assert f"is {w}x{h // 2} but the photo is {w}x{h}" in status
    page.locator("#mask-file input[type=file]").set_input_files(tmp_path / "mask.png")
    wait_status(page, "Mask **mask.png** is in the mask editor".replace("**", ""))

    # 3. prompt, 2 steps, run
    page.locator("#prompt textarea").fill(PROMPT)
    open_options(page)
    page.locator("#steps input").fill("2")
    page.locator("#seed input").fill("7")
    started = time.perf_counter()
    page.locator("#run").click()
    wait_status(page, "Edited face(s) 0")
    click_to_result = time.perf_counter() - started
    out = download(page, tmp_path / "edited.png")
    shot = artifacts_dir(tmp_path) / "app-screenshot.png"
    page.screenshot(path=shot, full_page=True)
    print(f"\nclick to result: {click_to_result:.2f} s (tiny 64 px model, 2 steps, {w}x{h} photo); screenshot: {shot}")

    edited = np.asarray(Image.open(out))
    assert edited.shape == photo.shape and edited.dtype == np.uint8
    prov = read_provenance(out)
    assert prov["prompt"] == PROMPT and prov["steps"] == 2 and prov["seed"] == 7
    assert prov["source"] == photo_path.name and prov["mask"] == "upload mask.png"
    expected = editor_for(str(tiny_artifact.path)).edit(photo_path, PROMPT, mask=m, steps=2, seed=7)
    outside = expected.soft == 0
    assert outside.mean() > 0.3 and (expected.soft > 0).any()
    assert np.array_equal(edited[outside], photo[outside])  # bit-identical outside the soft mask
    assert np.array_equal(edited, expected.image)  # the page ran exactly this edit
    x0, y0, x1, y1 = prov["region"]
    ring = np.ones((h, w), bool)
    ring[y0:y1, x0:x1] = False
    assert np.array_equal(edited[ring], photo[ring])

    # 4. a brush stroke above the face (hair): now part of the mask
    stroke_y = max(8, min(np.nonzero(m)[0]) - 40)
    assert expected.soft[stroke_y - 6 : stroke_y + 7, 200:312].max() == 0  # not edited the first time
    editor_stroke(page, [(200, stroke_y), (256, stroke_y), (312, stroke_y)])
    page.locator("#seed input").fill("8")
    page.locator("#run").click()
    wait_status(page, "(seed 8)")
    second = np.asarray(Image.open(download(page, tmp_path / "edited-2.png")))
    band = (slice(stroke_y - 3, stroke_y + 4), slice(215, 297))
    assert (second[band] != photo[band]).any(axis=-1).mean() > 0.5, "the stroke did not reach the mask"
    page.screenshot(path=artifacts_dir(tmp_path) / "app-screenshot-stroke.png", full_page=True)
    prov2 = read_provenance(tmp_path / "edited-2.png")
    assert (
        prov2["mask"] == "upload mask.png, corrected in the app"
        and min(f["region"][1] for f in prov2["faces"]) <= stroke_y - 3
    )


EDIT_API = {  # the /edit endpoint's parameters, in order: their names (EditRequest's fields) and the page's labels
    "photo_path": "Photo",
    "editor_value": "Face mask",
    "mask_path": "Mask image",
    "faces": "Faces to edit",
    "min_face": "Smallest face (px)",
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "seed": "Seed",
    "steps": "Steps",
    "guidance_scale": "Guidance scale",
    "strength": "Strength",
    "blend": "Pixel-level blending",
    "watermark": "Invisible watermark",
    "model": "Model",
}


def test_the_edit_endpoint_takes_an_edit_request_and_a_progress_tracker(server, tiny_artifact, tmp_path, monkeypatch):
    """`/edit`'s API parameters are EditRequest's fields in order (EDIT_INPUTS; `start` is the page's gr.State,
    not a parameter), by name and by position; Gradio hands the handler its progress tracker."""
    import gradio as gr
    from gradio_client import Client, handle_file

    from facepaint.apps.web import EDIT_INPUTS, EditRequest

    url, demo = server
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/edit"]["parameters"]
    assert [(p["parameter_name"], p["label"]) for p in params] == list(EDIT_API.items())
    assert EDIT_INPUTS == [*list(EDIT_API)[:-1], "start", "model"]

    seen = []

    def record(request, progress=None):  # in place of App.edit: what the handler was given
        seen.append((request, progress))
        raise ValueError("recorded")

    monkeypatch.setattr(demo.facepaint, "edit", record)
    Image.fromarray(textured(32, 48)).save(tmp_path / "photo.png")
    values = dict(photo_path=handle_file(tmp_path / "photo.png"), editor_value=None, mask_path=None, faces="0,2")
    values |= dict(min_face=30, prompt="a face", negative_prompt="ugly", seed=9, steps=3, guidance_scale=2.5)
    values |= dict(strength=0.5, blend=False, watermark=True)
    with pytest.raises(Exception, match="recorded"):
        client.predict(**values, api_name="/edit")
    with pytest.raises(Exception, match="recorded"):
        client.predict(*values.values(), str(tiny_artifact.path), api_name="/edit")
    assert len(seen) == 2
    for request, progress in seen:
        assert isinstance(request, EditRequest) and isinstance(progress, gr.Progress)
        given = {k: v for k, v in vars(request).items() if k not in ("photo_path", "start", "model")}
        assert given == {k: v for k, v in values.items() if k != "photo_path"}, given
        assert Path(request.photo_path).name == "photo.png" and request.start is None
        assert request.model == str(tiny_artifact.path)  # the dropdown's value: --model's


def test_the_api_edits_through_gradio_client(server, tiny_artifact, tmp_path):
    """`/edit` through gradio_client: a photo with no detectable face and a mask (the masked region is edited
    as one face); bad numbers and a bad photo are errors with their reason, naming the option; `/detect` answers
    a bad file."""
    from gradio_client import Client, handle_file

    from facepaint.apps.web import editor_for
    from facepaint.editing.provenance import read_provenance

    url, _ = server
    photo = textured(96, 128, seed=3)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    m = np.zeros((96, 128), np.uint8)
    m[30:70, 40:90] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))

    def arguments(photo_file, steps=2, **changes) -> dict:
        args = dict(
            photo_path=handle_file(photo_file),
            editor_value=None,
            mask_path=handle_file(tmp_path / "mask.png"),
            faces="all",
            min_face=64,
            prompt="an old face",
            negative_prompt="",
            seed=5,
            steps=steps,
            guidance_scale=7.5,
            strength=1.0,
            blend=True,
            watermark=False,
        )
        return {**args, **changes}

    def edit(photo_file, steps=2, **changes):  # by name, as docs/editing.md shows
        return client.predict(**arguments(photo_file, steps, **changes), api_name="/edit")

    _, png, provenance, status = edit(tmp_path / "photo.png")
    assert "the masked region, as one face," in status
    result = np.asarray(Image.open(png))
    assert result.shape == photo.shape
    assert read_provenance(png)["prompt"] == "an old face" == provenance["prompt"]
    assert read_provenance(png)["mask"] == "upload mask.png"
    expected = editor_for(str(tiny_artifact.path)).edit(photo, "an old face", mask=m > 0, steps=2, seed=5)
    assert np.array_equal(result[expected.soft == 0], photo[expected.soft == 0]) and (expected.soft == 0).any()
    x0, y0, x1, y1 = provenance["region"]
    ring = np.ones(m.shape, bool)
    ring[y0:y1, x0:x1] = False
    assert ring.any() and np.array_equal(result[ring], photo[ring])
    assert not np.array_equal(result[30:70, 40:90], photo[30:70, 40:90])

    for changes, reason in (
        ({"steps": "nan"}, "steps must be a whole number, got 'nan'"),  # JSON has no NaN: as a raw client sends it
        ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
        ({"steps": 201}, "steps must be a whole number from 1 to 200, got 201"),
        ({"steps": 0}, "steps must be a whole number from 1 to 200, got 0"),
        ({"guidance_scale": 1e9}, "guidance_scale must be a number from 0 to 100"),
        ({"min_face": -5}, "min_face must be a number from 0"),
        ({"seed": None}, "seed is missing"),
        ({"prompt": "  "}, "write a prompt"),
        ({"faces": "0,x"}, "0,x"),
        ({"model": str(tmp_path)}, "not in the list of choices"),  # the API cannot load any path on the server
    ):
        with pytest.raises(Exception, match=re.escape(reason)) as err:
            edit(tmp_path / "photo.png", **changes)
        assert "Traceback" not in str(err.value)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(Exception, match=r"photo notes\.png: corrupt or unreadable image"):
        edit(tmp_path / "notes.png")
    *_, faces, status = client.predict(handle_file(tmp_path / "notes.png"), "all", 64, api_name="/detect")
    assert faces == [] and "Cannot use this photo" in status
    # still serving; by position too, as a client that does not name the parameters
    assert "the masked region" in client.predict(*arguments(tmp_path / "photo.png").values(), api_name="/edit")[3]
    assert 0 <= client.predict(api_name="/random_seed") < 2**32


PROGRESS_WATCH = """() => {
  window.__seen = [];
  const status = document.querySelector('#status');
  const look = () => {
    const text = status.innerText.replace(/\\s+/g, ' ');
    if (/denoising/.test(text) && !window.__seen.includes(text)) window.__seen.push(text);
  };
  new MutationObserver(look).observe(status, {subtree: true, childList: true, characterData: true});
}"""


def in_view(page, selector: str) -> bool:
    """Whether the element is wholly inside the viewport, as it is now (no scrolling)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (
        box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and (box["x"] + box["width"] <= size["width"])
    )


@pytest.mark.fixture
@pytest.mark.slow  # a 20-step edit watched in the browser: ~15 s
def test_the_page_shows_the_edit_progress_and_the_result_in_view(server, browser, fixture_root, tmp_path):
    """At 1400x1000 the photo, the mask editor, the result and the Edit button are in one view; the uploaded mask
    image stays where it was put; during an edit the status says the denoising step ("denoising step 3/20"); after
    it the result is in view without scrolling, the status says what was edited, with no error badge; the slider
    has no download of its own (the only download is the signed PNG, which `facepaint verify` accepts); a bad face
    index is said in the page's terms, once, in the status."""
    from facepaint.apps.cli import main

    url, _ = server
    image_id = int((fixture_root / "ids.txt").read_text().split()[0])
    photo_path = fixture_root / "CelebA-HQ-img" / f"{image_id}.jpg"
    Image.fromarray(face_mask(fixture_root, image_id).astype(np.uint8) * 255).save(tmp_path / "mask.png")
    out = Path(os.environ.get("FACEPAINT_ISSUE_ARTIFACTS") or artifacts_dir(tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.locator("#photo input[type=file]").set_input_files(photo_path)
    wait_status(page, "1 face(s)")
    page.locator("#mask-file input[type=file]").set_input_files(tmp_path / "mask.png")
    wait_status(page, "is in the mask editor")
    page.locator("#prompt textarea").fill(PROMPT)
    for selector in ("#photo", "#overlay", "#mask-editor", "#result", "#prompt", "#run", "#status"):
        assert in_view(page, selector), f"{selector} is not in the first view"
    time.sleep(0.5)
    assert page.locator("#mask-file img").count() >= 1, "the mask image did not stay where it was put"
    zoom = float(re.search(r"(\d+)%", page.locator("#mask-editor").inner_text()).group(1))
    assert zoom >= 45, f"the mask editor shows the photo at {zoom}%"

    page.screenshot(path=out / "app-before.png")
    open_options(page)  # below the Edit button: the page scrolls down to it
    page.locator("#steps input").fill("20")
    page.locator("#steps input").blur()
    page.evaluate(PROGRESS_WATCH)
    page.locator("#run").click()
    try:  # a look at the progress (20 tiny steps take about a second: the check is the watcher's, below)
        page.wait_for_function("() => /denoising/.test(document.querySelector('#status').innerText)", timeout=5000)
        page.screenshot(path=out / "app-progress.png")
    except Exception:
        pass
    status = wait_status(page, "Edited face(s) 0")
    seen = page.evaluate("window.__seen")
    assert any(re.search(r"denoising step \d+/20", s) for s in seen), seen
    page.wait_for_timeout(1000)  # the page's smooth scroll to the result
    page.screenshot(path=out / "app-after.png")
    assert in_view(page, "#result") and in_view(page, "#status")
    assert page.locator("#result img").count() >= 1
    assert "Error" not in page.locator("#result").inner_text() and "Error" not in status
    assert page.locator("#result button[aria-label*=ownload], #result a[download]").count() == 0
    signed = download(page, tmp_path / "edited.png")
    assert main(["verify", str(signed)]) == 0

    # a face index that does not exist: one message, in the status, naming where the faces are numbered
    page.locator("#faces input, #faces textarea").first.fill("3")
    page.locator("#run").click()
    status = wait_status(page, "Cannot edit")
    assert "face index [3] does not exist" in status and "Faces found" in status and "facepaint detect" not in status
    assert page.locator(".toast-body").count() == 0
