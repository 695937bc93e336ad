"""`facepaint edit` on a tiny artifact: one photo, a folder with a corrupt photo, expected errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facepaint.apps.cli import main
from facepaint.editing.provenance import read_provenance

# sigma is in pixels of a 512 px face crop: 8 is the tiny 64 px model's 1 px seam (the default 4 would be 0.5 px)
FAST = ["--steps", "2", "--sigma", "8"]


def write_photo(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_mask(path, h, w):
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    Image.fromarray(m).save(path)


def test_single_photo(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.jpg", 90, 70)
    write_mask(tmp_path / "mask.png", 45, 35)  # half size, same aspect
    out = tmp_path / "out" / "me.png"
    code = main(
        [
            "edit",
            str(tmp_path / "me.jpg"),
            "--prompt",
            "a smiling face",
            "--out",
            str(out),
            "--model",
            str(tiny_artifact.path),
            "--mask",
            str(tmp_path / "mask.png"),
            "--seed",
            "3",
            "--watermark",
            "--guidance-scale",
            "4",
            "--scheduler",
            "dpm",
            *FAST,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (70, 90)
    prov = read_provenance(out)
    assert prov["prompt"] == "a smiling face" and prov["seed"] == 3 and prov["watermark"] is True
    assert prov["guidance_scale"] == 4.0 and prov["mask"] == str(tmp_path / "mask.png") and prov["scheduler"] == "dpm"
    assert prov["sigma"] == 8.0 and prov["steps"] == 2 and prov["strength"] == 1.0  # SamplingOptions, whole


def test_sigma_and_scheduler_reach_the_edit_and_its_provenance(tiny_artifact, tmp_path, capsys):
    """--sigma and --scheduler are per-edit options (SamplingOptions): each output's provenance records the ones
    it ran with (the defaults when not given), and a wider sigma widens the blended seam: more pixels around the
    mask change, while the hard mask's inside changes either way."""
    from facepaint.method.options import SamplingOptions

    write_photo(tmp_path / "me.png", 64, 64, seed=4)
    write_mask(tmp_path / "mask.png", 64, 64)
    base = ["edit", str(tmp_path / "me.png"), "--prompt", "a face", "--model", str(tiny_artifact.path)]
    base += ["--mask", str(tmp_path / "mask.png"), "--steps", "2", "--seed", "1"]
    runs = {"hard": ["--sigma", "0", "--scheduler", "dpm"], "wide": ["--sigma", "16", "--scheduler", "dpm"]}
    runs["defaults"] = []
    for name, flags in runs.items():
        assert main([*base, "--out", str(tmp_path / f"{name}.png"), *flags]) == 0, capsys.readouterr().err
    prov = {name: read_provenance(tmp_path / f"{name}.png") for name in runs}
    assert (prov["hard"]["sigma"], prov["hard"]["scheduler"]) == (0.0, "dpm")
    assert (prov["wide"]["sigma"], prov["wide"]["scheduler"]) == (16.0, "dpm")
    defaults = SamplingOptions()
    assert (prov["defaults"]["sigma"], prov["defaults"]["scheduler"]) == (defaults.sigma, defaults.scheduler)
    assert (defaults.sigma, defaults.scheduler) == (4.0, "ddim")
    photo = np.asarray(Image.open(tmp_path / "me.png"), int)
    changed = {n: (np.asarray(Image.open(tmp_path / f"{n}.png"), int) != photo).any(-1) for n in ("hard", "wide")}
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    inner = np.zeros((64, 64), bool)
    inner[20:44, 20:44] = True  # well inside the mask (16:48)
    assert changed["hard"][inner].mean() > 0.9 and changed["wide"][inner].mean() > 0.9
    seams = {n: int((c & ~mask).sum()) for n, c in changed.items()}  # changed pixels outside the mask
    assert seams["hard"] == 0 and seams["wide"] > 200, seams  # sigma 0: the hard mask; 16: a 2 px seam at 64 px


def test_folder_with_a_corrupt_photo_goes_on_and_fails_at_the_end(tiny_artifact, tmp_path, capsys):
    photos, masks, out = tmp_path / "photos", tmp_path / "masks", tmp_path / "edited"
    photos.mkdir(), masks.mkdir()
    for i, (h, w) in enumerate([(64, 64), (97, 150), (120, 80)]):
        write_photo(photos / f"p{i}.png", h, w, seed=i)
        write_mask(masks / f"p{i}.png", h, w)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    write_mask(masks / "broken.png", 64, 64)
    (photos / "notes.txt").write_text("not a photo")
    code = main(
        [
            "edit",
            str(photos),
            "--prompt",
            "a face",
            "--out",
            str(out),
            "--model",
            str(tiny_artifact.path),
            "--mask",
            str(masks),
            "--no-blend",
            *FAST,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert Image.open(out / "p1.png").size == (150, 97) and read_provenance(out / "p1.png")["blend"] is False
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "Traceback" not in err
    assert "edited 3 of 4 photos" in err


def test_expected_errors_are_one_line(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.png", 64, 64)
    base = ["edit", str(tmp_path / "me.png"), "--prompt", "a face", "--out", str(tmp_path / "o.png"), *FAST]
    assert main([*base, "--model", str(tmp_path / "no-model")]) == 1
    assert "error: model artifact" in capsys.readouterr().err
    assert main([*base, "--model", str(tiny_artifact.path), "--bisenet-weights", str(tmp_path / "nope.pth")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: BiSeNet weights not found") and "--mask" in err and len(err.splitlines()) == 1
    write_mask(tmp_path / "empty.png", 64, 0 + 1)  # a 64 x 1 mask: wrong aspect
    assert main([*base, "--model", str(tiny_artifact.path), "--mask", str(tmp_path / "empty.png")]) == 1
    assert "aspect ratio" in capsys.readouterr().err
    Image.new("L", (64, 64)).save(tmp_path / "black.png")
    assert main([*base, "--model", str(tiny_artifact.path), "--mask", str(tmp_path / "black.png")]) == 1
    assert "no face found in " + str(tmp_path / "me.png") in capsys.readouterr().err
    assert main([*base[: -len(FAST) - 2], "--out", str(tmp_path / "o.jpg"), "--model", str(tiny_artifact.path)]) == 1
    assert "must be a .png" in capsys.readouterr().err
    # the sampling options and choices are parsed by parse_edit_options: one line naming the option (no dashes)
    for flag, value, reason in (
        ("--strength", "0", "strength must be in (0, 1]"),
        ("--steps", "2.5", "steps must be a whole number"),
        ("--guidance-scale", "lots", "guidance_scale must be a number"),
        ("--sigma", "-1", "sigma must be a number from 0"),
        ("--seed", "-1", "seed must be a whole number from 0"),
        ("--min-face", "-5", "min_face must be a number from 0"),
        ("--faces", "two", "faces must be 'all', 'largest' or indices"),
    ):
        assert main([*base, "--model", str(tiny_artifact.path), flag, value]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {reason}") and len(err.splitlines()) == 1, (flag, err)
    assert not (tmp_path / "o.png").exists()


def test_long_prompt_warning_reaches_stderr(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.png", 64, 64)
    write_mask(tmp_path / "mask.png", 64, 64)
    prompt = "a face " * 40 + "with green eyes"
    assert (
        main(
            [
                "edit",
                str(tmp_path / "me.png"),
                "--prompt",
                prompt,
                "--out",
                str(tmp_path / "o.png"),
                "--model",
                str(tiny_artifact.path),
                "--mask",
                str(tmp_path / "mask.png"),
                *FAST,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: prompt" in err and "green eyes" in err


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facepaint.apps.cli",
            "edit",
            str(tmp_path / "x.jpg"),
            "--prompt",
            "a",
            "--out",
            str(tmp_path / "o.png"),
            "--model",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_speed_flags_reach_the_editor_and_keep_the_image(tiny_artifact, tmp_path, capsys, monkeypatch):
    write_photo(tmp_path / "me.png", 80, 64)
    write_mask(tmp_path / "mask.png", 80, 64)
    base = [
        "edit",
        str(tmp_path / "me.png"),
        "--prompt",
        "a face",
        "--model",
        str(tiny_artifact.path),
        "--mask",
        str(tmp_path / "mask.png"),
        *FAST,
    ]
    assert main([*base, "--out", str(tmp_path / "sdpa.png")]) == 0, capsys.readouterr().err
    assert (
        main([*base, "--out", str(tmp_path / "classic.png"), "--attention", "classic", "--channels-last", "on"]) == 0
    ), capsys.readouterr().err
    sdpa, classic = read_provenance(tmp_path / "sdpa.png"), read_provenance(tmp_path / "classic.png")
    assert sdpa["runtime"] == {
        "device": "cpu",
        "dtype": "fp32",
        "attention": "sdpa",
        "channels_last": False,
        "compile": "off",
        "batch": 1,
    }
    assert classic["runtime"]["attention"] == "classic" and classic["runtime"]["channels_last"] is True
    # the same edit up to float rounding: at most 2/255 per channel, on at most 1% of the values
    diff = np.abs(
        np.asarray(Image.open(tmp_path / "sdpa.png"), int) - np.asarray(Image.open(tmp_path / "classic.png"), int)
    )
    assert diff.max() <= 2 and (diff > 0).mean() <= 0.01

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(kw) or module)  # no real compile
    assert main([*base, "--out", str(tmp_path / "c.png"), "--compile"]) == 0, capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "m.png"), "--compile", "max-autotune"]) == 0
    assert compiled == [{"mode": None, "dynamic": False}, {"mode": "max-autotune", "dynamic": False}]
    assert read_provenance(tmp_path / "m.png")["runtime"]["compile"] == "max-autotune"


def test_invalid_speed_flags_exit_with_a_clear_error(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.png", 64, 64)
    base = [
        "edit",
        str(tmp_path / "me.png"),
        "--prompt",
        "a face",
        "--out",
        str(tmp_path / "o.png"),
        "--model",
        str(tiny_artifact.path),
        *FAST,
    ]
    for flag, value, allowed in (
        ("--attention", "flash", ("sdpa", "classic")),
        ("--channels-last", "yes", ("auto", "on", "off")),
        ("--compile", "fast", ("default", "reduce-overhead", "max-autotune")),
    ):
        with pytest.raises(SystemExit) as e:
            main([*base, flag, value])
        err = capsys.readouterr().err.splitlines()[-1]  # argparse: usage, then the error line
        assert e.value.code == 2 and f"{flag}: invalid choice: '{value}'" in err and all(a in err for a in allowed)
    assert main([*base, "--batch-size", "0"]) == 1
    assert "error: --batch-size must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_folder_in_batches_matches_one_at_a_time(tiny_artifact, tmp_path, capsys):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir(), masks.mkdir()
    for i, (h, w) in enumerate([(64, 64), (97, 150), (120, 80)]):
        write_photo(photos / f"p{i}.png", h, w, seed=i)
        write_mask(masks / f"p{i}.png", h, w)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    base = ["edit", str(photos), "--prompt", "a face", "--model", str(tiny_artifact.path), "--mask", str(masks), *FAST]
    assert main([*base, "--out", str(tmp_path / "one")]) == 1
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "two"), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "edited 3 of 4 photos" in err and sum(line.startswith("error:") for line in err.splitlines()) == 1
    for i in range(3):
        one, two = tmp_path / "one" / f"p{i}.png", tmp_path / "two" / f"p{i}.png"
        diff = np.abs(np.asarray(Image.open(one), int) - np.asarray(Image.open(two), int))
        assert diff.max() <= 2 and (diff > 0).mean() <= 0.01  # batching: float rounding only
        # broken.jpg sorts first, so the first batch holds broken.jpg and p0 -> p0 alone; then p1 + p2
        assert read_provenance(two)["runtime"]["batch"] == (1 if i == 0 else 2)


@pytest.mark.fixture
def test_detect_lists_the_faces_and_edit_picks_them(tiny_artifact, fixture_root, tmp_path, capsys):
    """`facepaint detect` on a composite of three fixture faces: the listing, its JSON (photo pixels, the
    index order of --faces) and a preview; then `facepaint edit --faces` with those indices, and the errors
    for an index that does not exist, missing detector weights and a photo without a face."""
    import json

    from tools.composites import composite, truth_mask

    ids = [int(x) for x in (fixture_root / "ids.txt").read_text().split()][20:23]
    photo, truths = composite(fixture_root, ids, canvas=(1203, 801), seed=5, scale=(0.8, 1.0))
    Image.fromarray(photo).save(tmp_path / "group.png")
    Image.fromarray(truth_mask(fixture_root, truths, (1203, 801), ("skin", "nose")).astype(np.uint8) * 255).save(
        tmp_path / "mask.png"
    )
    args = ["detect", str(tmp_path / "group.png"), "--json", str(tmp_path / "faces.json")]
    assert main([*args, "--preview", str(tmp_path / "preview.png")]) == 0
    out = capsys.readouterr().out
    assert "3 face(s) found by mediapipe-blazeface" in out and "face 2: box [" in out and "landmarks" in out
    assert "--min-face" not in out  # every face listed is at least --min-face wide, as the heading implies
    listed = json.loads((tmp_path / "faces.json").read_text())
    assert listed["detector"] == "mediapipe-blazeface" and len(listed["faces"]) == 3 and listed["min_face"] == 64
    centres = [(f["box"][0] + f["box"][2]) / 2 for f in listed["faces"]]
    assert centres == sorted(centres)
    assert all(len(f["landmarks"]) == 5 and len(f["outline"]) == 36 for f in listed["faces"])
    for f, t in zip(listed["faces"], sorted(truths, key=lambda t: t.centre[0])):
        assert abs((f["box"][0] + f["box"][2]) / 2 - t.centre[0]) < 0.5 * t.width
    assert Image.open(tmp_path / "preview.png").size == (1203, 801)

    base = ["edit", str(tmp_path / "group.png"), "--prompt", "a face", "--model", str(tiny_artifact.path), *FAST]
    base += ["--mask", str(tmp_path / "mask.png")]
    assert main([*base, "--out", str(tmp_path / "two.png"), "--faces", "0,2"]) == 0
    assert "edited 2 face(s)" in capsys.readouterr().err
    prov = read_provenance(tmp_path / "two.png")
    assert [f["index"] for f in prov["faces"]] == [0, 2] and prov["detector"] == "mediapipe-blazeface"
    assert main([*base, "--out", str(tmp_path / "bad.png"), "--faces", "4"]) == 1
    err = capsys.readouterr().err
    assert "face index [4] does not exist" in err and "facepaint detect" in err
    assert not (tmp_path / "bad.png").exists()
    assert main([*base, "--out", str(tmp_path / "bad.png"), "--faces", "two"]) == 1
    assert "faces must be 'all', 'largest' or indices" in capsys.readouterr().err
    missing = ["--detector", "retinaface", "--detector-weights", str(tmp_path / "none.pth")]
    assert main([*base, "--out", str(tmp_path / "bad.png"), *missing]) == 1
    err = capsys.readouterr().err
    assert "RetinaFace weights not found" in err and "--detector opencv" in err and len(err.splitlines()) == 1
    Image.new("RGB", (300, 200), (128, 128, 128)).save(tmp_path / "wall.png")
    assert main(["detect", str(tmp_path / "wall.png")]) == 0  # a valid photo without faces is not an error
    assert "no face found by mediapipe-blazeface" in capsys.readouterr().out
    no_mask = ["edit", str(tmp_path / "wall.png"), "--prompt", "a face", "--model", str(tiny_artifact.path), *FAST]
    Image.new("L", (300, 200)).save(tmp_path / "wall-mask.png")
    assert main([*no_mask, "--out", str(tmp_path / "wall-out.png"), "--mask", str(tmp_path / "wall-mask.png")]) == 1
    assert "no face found in " + str(tmp_path / "wall.png") in capsys.readouterr().err
    assert not (tmp_path / "wall-out.png").exists()


# ------------------------------------------------------------------------------ the first five minutes

HEAVY = ("torch", "diffusers", "transformers", "gradio", "mlflow", "cv2")


def test_building_the_parser_imports_nothing_heavy():
    """`facepaint --help` answers at once: building the parser imports none of the heavy libraries (each command
    imports what it runs), so its choices and defaults come from light modules (facepaint.editing.choices,
    facepaint.method.options, facepaint.method.speed)."""
    code = (
        "import sys; from facepaint.apps.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "facepaint.apps.cli", "edit", "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and helped.stdout.startswith("usage: facepaint edit"), helped.stderr


def test_bad_input_is_refused_before_anything_heavy_is_imported(tmp_path):
    """A photo over the pixel limit (a 63 MP PNG of a few KB), a prompt over the length limit, steps over the
    limit: `facepaint edit` says so and exits 1 before torch or a model is imported (a second, not a minute)."""
    from PIL import Image

    from facepaint.common.limits import MAX_PROMPT_CHARS

    Image.new("1", (9000, 7000)).save(tmp_path / "bomb.png")
    write_photo(tmp_path / "me.png", 64, 64)
    out = str(tmp_path / "o.png")
    for args, said in (
        ([str(tmp_path / "bomb.png"), "--prompt", "a face"], "9000x7000 (63.0 megapixels) is over the limit"),
        ([str(tmp_path / "me.png"), "--prompt", "x" * (MAX_PROMPT_CHARS + 1)], "--prompt is 2,001 characters"),
        ([str(tmp_path / "me.png"), "--prompt", "a", "--steps", "201"], "steps must be a whole number from 1 to 200"),
    ):
        code = (
            "import sys; from facepaint.apps.cli import main; "
            f"rc = main(['edit', *{args!r}, '--out', {out!r}]); "
            f"print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "1 []" and said in proc.stderr, (args[1:], proc.stdout, proc.stderr)


def _subparsers(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _shown(value) -> str:
    """A default as the help states it: 7.5, 1 (for 1.0), 0, none (an empty text)."""
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value == "" else str(value)


def test_every_option_has_help_and_edit_states_every_default():
    """Each command's help is about that command (its own description, its options in groups, each with a help
    text); every option of `facepaint edit` that is not required says its default, and for those with a value
    (SamplingOptions', EditChoices', or argparse's) the value itself: "(default: 0)" for --seed."""
    import dataclasses
    import re

    from facepaint.apps import cli
    from facepaint.editing.choices import EditChoices
    from facepaint.method.options import SamplingOptions

    commands = _subparsers(cli.build_parser())
    assert set(commands) == {"edit", "detect", "models", "verify", "app"}
    for name, sub in commands.items():
        assert sub.description and sub.description != cli.__doc__, name
        for action in sub._actions:
            if action.option_strings == ["-h", "--help"]:
                continue
            assert action.help and action.help.strip(), (name, action.dest)
    edit = commands["edit"]
    assert edit.description.startswith("Edit the faces in a photo") and len(edit.description) < 500
    text = edit.format_help()
    assert "for every option" not in text and "facepaint edit -h" not in text
    titles = [g.title for g in edit._action_groups]
    for title in ("input and output", "prompt", "faces and mask", "sampling", "model", "speed", "signing the output"):
        assert title in titles, titles
    assert "models:/facepaint@champion" in next(a.help for a in edit._actions if a.dest == "model")
    known = {**dataclasses.asdict(SamplingOptions()), **dataclasses.asdict(EditChoices())}
    checked = []
    for action in edit._actions:
        if not action.option_strings or action.required or action.option_strings == ["-h", "--help"]:
            continue
        assert "(default: " in action.help, action.option_strings
        if action.nargs == 0:  # a flag: its default is a word (signed, off, blended)
            continue
        value = known.get(action.dest, action.default)
        if value is not None:
            stated = re.search(rf"\(default: {re.escape(_shown(value))}[),:]", action.help)
            assert stated, (action.option_strings, action.help)
            checked.append(action.option_strings[0])
    for flag in ("--seed", "--negative-prompt", "--scheduler", "--dtype", "--steps", "--guidance-scale", "--sigma"):
        assert flag in checked, checked
    for name in ("detect", "app"):
        assert {g.title for g in commands[name]._action_groups} - {"positional arguments", "options"}, name


def test_a_single_photo_edit_shows_its_progress(tiny_artifact, tmp_path, capsys, monkeypatch):
    """A single photo's edit shows a bar of its denoising steps on stderr (tqdm: the steps counter, the rate),
    from `FaceEditor.edit_batch`'s on_step; stdout stays empty. On a terminal, lines also say when the model
    loads and the faces are searched (kept out of a log, where an expected problem is one `error:` line)."""
    from facepaint.apps import cli

    write_photo(tmp_path / "me.png", 64, 64)
    write_mask(tmp_path / "mask.png", 64, 64)
    base = ["edit", str(tmp_path / "me.png"), "--prompt", "a face", "--model", str(tiny_artifact.path)]
    base += ["--mask", str(tmp_path / "mask.png"), *FAST]
    assert main([*base, "--out", str(tmp_path / "o.png")]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "denoising" in err and "2/2" in err and "step/s" in err, err
    assert "loading the model" not in err  # not a terminal
    assert err.index("2/2") < err.index("edited 1 face(s)")
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    assert main([*base, "--out", str(tmp_path / "o2.png"), "--strength", "0.5", "--steps", "4"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "2/2" in err  # strength 0.5 of 4 steps: 2 run
    loading, finding = err.index(f"loading the model {tiny_artifact.path} ..."), err.index("finding the faces in")
    assert loading < finding < err.index("denoising")


def test_the_demo_model_announces_itself(tiny_artifact, tmp_path, capsys):
    """A model on random weights (the demo's tiny one) says so in one `note:` line: its edits are noise, and
    where the real weights' training is described; a model on pretrained weights says nothing of the kind."""
    import dataclasses

    from facepaint.apps.cli import demo_notice
    from facepaint.method.artifact import load_artifact

    write_photo(tmp_path / "me.png", 64, 64)
    write_mask(tmp_path / "mask.png", 64, 64)
    args = ["edit", str(tmp_path / "me.png"), "--prompt", "a face", "--model", str(tiny_artifact.path)]
    assert main([*args, "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o.png"), *FAST]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "demo model" in line]
    assert len(notes) == 1, notes
    assert notes[0].startswith(f"note: {tiny_artifact.path}: this is a demo model (a tiny network with random weights")
    assert "its edits are noise" in notes[0] and "docs/pipeline.md" in notes[0]
    model = load_artifact(tiny_artifact.path).conditions.model
    assert model.source == "tiny" and demo_notice("m", model) is not None
    assert "full-size" in demo_notice("m", dataclasses.replace(model, source="random"))
    assert demo_notice("m", dataclasses.replace(model, source="pretrained", pretrained="some/sd15")) is None
