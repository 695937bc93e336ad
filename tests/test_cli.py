"""`facepaint edit` on a tiny artifact: one photo, a folder with a corrupt photo, expected errors."""
import subprocess
import sys

import numpy as np
from PIL import Image

from facepaint.cli import main
from facepaint.edit import read_provenance

FAST = ["--steps", "2", "--sigma", "1"]



def write_photo(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_mask(path, h, w):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    Image.fromarray(m).save(path)


def test_single_photo(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.jpg", 90, 70)
    write_mask(tmp_path / "mask.png", 45, 35)  # half size, same aspect
    out = tmp_path / "out" / "me.png"
    code = main(["edit", str(tmp_path / "me.jpg"), "--prompt", "a smiling face", "--out", str(out),
                 "--model", str(tiny_artifact.path), "--mask", str(tmp_path / "mask.png"), "--seed", "3", "--watermark",
                 "--guidance-scale", "4", "--scheduler", "dpm", *FAST])
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (70, 90)
    prov = read_provenance(out)
    assert prov["prompt"] == "a smiling face" and prov["seed"] == 3 and prov["watermark"] is True
    assert prov["guidance_scale"] == 4.0 and prov["mask"] == str(tmp_path / "mask.png") and prov["scheduler"] == "dpm"


def test_folder_with_a_corrupt_photo_goes_on_and_fails_at_the_end(tiny_artifact, tmp_path, capsys):
    photos, masks, out = tmp_path / "photos", tmp_path / "masks", tmp_path / "edited"
    photos.mkdir(), masks.mkdir()
    for i, (h, w) in enumerate([(64, 64), (97, 150), (120, 80)]):
        write_photo(photos / f"p{i}.png", h, w, seed=i)
        write_mask(masks / f"p{i}.png", h, w)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    write_mask(masks / "broken.png", 64, 64)
    (photos / "notes.txt").write_text("not a photo")
    code = main(["edit", str(photos), "--prompt", "a face", "--out", str(out), "--model", str(tiny_artifact.path),
                 "--mask", str(masks), "--no-blend", *FAST])
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
    assert main([*base[:-len(FAST) - 2], "--out", str(tmp_path / "o.jpg"), "--model", str(tiny_artifact.path)]) == 1
    assert "must be a .png" in capsys.readouterr().err
    assert main([*base, "--model", str(tiny_artifact.path), "--strength", "0"]) == 1
    assert "strength" in capsys.readouterr().err


def test_long_prompt_warning_reaches_stderr(tiny_artifact, tmp_path, capsys):
    write_photo(tmp_path / "me.png", 64, 64)
    write_mask(tmp_path / "mask.png", 64, 64)
    prompt = "a face " * 40 + "with green eyes"
    assert main(["edit", str(tmp_path / "me.png"), "--prompt", prompt, "--out", str(tmp_path / "o.png"),
                 "--model", str(tiny_artifact.path), "--mask", str(tmp_path / "mask.png"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "warning: prompt" in err and "green eyes" in err


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facepaint.cli", "edit", str(tmp_path / "x.jpg"), "--prompt", "a",
                           "--out", str(tmp_path / "o.png"), "--model", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
