"""Signed C2PA provenance (facepaint.editing.signing): an edit verifies; any change to the file after signing, a
missing manifest, another signer or a file that is no image fails `facepaint verify` with a clear message;
the key is made once (atomically, 0600) and reused; the pyfunc model returns the same signed bytes."""

import io
import json
import os
import stat
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from facepaint.apps.cli import main
from facepaint.editing import signing
from facepaint.editing import watermark as wm
from facepaint.editing.provenance import read_provenance
from tests.helpers import REPO, box_mask, textured

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROMPT = "a smiling face with green eyes"


# ------------------------------------------------------------------------------------------ helpers


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's chunks as (type, body)."""
    assert data.startswith(PNG_MAGIC)
    out, pos = [], len(PNG_MAGIC)
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def assemble(parts: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG from chunks, each with its correct CRC (a well-formed file: only the content changed)."""
    body = b"".join(len(b).to_bytes(4, "big") + t + b + zlib.crc32(t + b).to_bytes(4, "big") for t, b in parts)
    return PNG_MAGIC + body


def with_pixels(signed: bytes, pixels: np.ndarray) -> bytes:
    """The signed file with its image data re-encoded from `pixels` and every other chunk (the manifest, the
    provenance text) kept as it was: what an editor that preserves metadata writes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    new_idat = [c for c in chunks(buf.getvalue()) if c[0] == b"IDAT"]
    parts = chunks(signed)
    first = next(i for i, c in enumerate(parts) if c[0] == b"IDAT")
    return assemble(parts[:first] + new_idat + [c for c in parts[first:] if c[0] != b"IDAT"])


def verify_cli(path, key, capsys) -> tuple[int, str, str]:
    code = main(["verify", str(path), "--c2pa-dir", str(key)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ an edit


@pytest.fixture(scope="module")
def signed(tiny_artifact, tmp_path_factory):
    """(the PNG `facepaint edit --watermark` wrote, its key directory): a textured photo with a face mask."""
    tmp = tmp_path_factory.mktemp("signed")
    Image.fromarray(textured(160, 130, seed=2)).save(tmp / "photo.png")
    Image.fromarray(box_mask(160, 130, 40, 110, 30, 100).astype(np.uint8) * 255).save(tmp / "mask.png")
    key, out = tmp / "key", tmp / "edited.png"
    args = ["edit", str(tmp / "photo.png"), "--prompt", PROMPT, "--out", str(out), "--mask", str(tmp / "mask.png")]
    code = main([*args, "--model", str(tiny_artifact.path), "--steps", "2", "--watermark", "--c2pa-dir", str(key)])
    assert code == 0 and out.is_file()
    return out, key


def test_an_edit_verifies_naming_the_prompt_and_the_model_version(signed, tiny_artifact, capsys):
    out, key = signed
    code, text, err = verify_cli(out, key, capsys)
    assert code == 0, text + err
    assert PROMPT in text and tiny_artifact.version in text and "the masked region at [" in text
    assert "signature: valid (Es256)" in text and f"trusted: issued by the facepaint CA {key / 'ca.pem'}" in text
    assert "data hash: matches" in text and "watermark: detected in the masked region" in text and "NOT" not in text
    report = signing.verify(out, key=key)
    assert report.ok and report.claim == read_provenance(out)  # the signed claim is the whole provenance
    assert report.claim["artifact_version"] == tiny_artifact.version and report.claim["prompt"] == PROMPT
    assert set(signing.REQUIRED) <= set(report.codes) and not report.failures
    assert report.signature["common_name"].startswith("facepaint local signer")
    assert [w["detected"] for w in report.watermark] == [True]
    other = signing.verify(out, key=key, watermark_key="someone else")  # the claim says marked: it must be there
    assert not other.ok and "the mark is not detected in [" in other.problems[0] and other.watermark[0]["z"] < 4
    assert json.loads(json.dumps(report.to_json()))["ok"] is True


def test_verify_in_a_fresh_process(signed, tmp_path, capsys):
    """`python -m facepaint.apps.cli verify` in a fresh process: exit status 0 for the edit; 1 and one `error:`
    line for the same file with one byte of its image data changed."""
    out, key = signed
    cmd = [sys.executable, "-m", "facepaint.apps.cli", "verify", str(out), "--c2pa-dir", str(key)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert ok.returncode == 0 and PROMPT in ok.stdout and ok.stderr == "", ok.stdout + ok.stderr
    data = bytearray(out.read_bytes())
    data[data.index(b"IDAT") + 40] ^= 0x01
    (tmp_path / "changed.png").write_bytes(bytes(data))
    code, _, err = verify_cli(tmp_path / "changed.png", key, capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "modified after it was signed" in err


def test_any_change_after_signing_fails(signed, tmp_path, capsys):
    out, key = signed
    data = out.read_bytes()
    pixels = np.asarray(Image.open(out)).copy()
    pixels[0, 0, 0] ^= 1  # one pixel, one bit, far from the face

    # the pixel flipped and the image data re-encoded, the manifest and the provenance kept
    (tmp_path / "pixel.png").write_bytes(with_pixels(data, pixels))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pixel.png")), pixels)
    code, text, err = verify_cli(tmp_path / "pixel.png", key, capsys)
    assert code == 1 and "modified after it was signed" in err and "data hash: does NOT match" in text

    # one byte of the compressed image data, the chunk's CRC fixed: a well-formed PNG
    parts = chunks(data)
    i = next(i for i, c in enumerate(parts) if c[0] == b"IDAT")
    body = bytearray(parts[i][1])
    body[len(body) // 2] ^= 0x80
    (tmp_path / "byte.png").write_bytes(assemble(parts[:i] + [(b"IDAT", bytes(body))] + parts[i + 1 :]))
    report = signing.verify(tmp_path / "byte.png", key=key)
    assert not report.ok and any(f.startswith("assertion.dataHash.mismatch") for f in report.failures)

    # the provenance text chunk rewritten (another prompt), the pixels and the manifest untouched
    forged = [(t, b.replace(PROMPT.encode(), b"a frowning face") if t == b"tEXt" else b) for t, b in parts]
    assert forged != parts
    (tmp_path / "text.png").write_bytes(assemble(forged))
    assert read_provenance(tmp_path / "text.png")["prompt"] == "a frowning face"
    said = " ".join(signing.verify(tmp_path / "text.png", key=key).problems)
    assert (
        "modified after it was signed: its provenance text was changed: faces, prompt differ from the signed" in said
    )
    assert "image data" not in said
    # the pixels' bytes changed, not the text: the image data is named
    said = " ".join(signing.verify(tmp_path / "byte.png", key=key).problems)
    assert "its image data no longer matches the signed hash" in said

    # the manifest itself damaged (its chunk's bytes zeroed, or emptied; CRCs fixed): a corrupt manifest, not none
    i = next(i for i, c in enumerate(parts) if c[0] == b"caBX")
    for name, body in (("zeroed", bytes(len(parts[i][1]))), ("emptied", b"")):
        (tmp_path / f"{name}.png").write_bytes(assemble(parts[:i] + [(b"caBX", body)] + parts[i + 1 :]))
        said = " ".join(signing.verify(tmp_path / f"{name}.png", key=key).problems)
        assert "carries a C2PA manifest that cannot be read" in said and "damaged or tampered with" in said, said
        assert "no C2PA manifest" not in said and "facepaint writes PNG" not in said, said

    # re-saved by an ordinary editor that keeps the provenance text but not the manifest
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("facepaint", json.dumps(read_provenance(out)))
    Image.fromarray(pixels).save(tmp_path / "resaved.png", pnginfo=info)
    code, text, err = verify_cli(tmp_path / "resaved.png", key, capsys)
    assert code == 1 and "no C2PA manifest" in text and "re-saved or modified after signing" in err


def test_a_file_without_a_manifest_or_no_image_fails_clearly(signed, tmp_path, capsys):
    out, key = signed
    Image.fromarray(textured(32, 32)).save(tmp_path / "plain.png")
    code, _, err = verify_cli(tmp_path / "plain.png", key, capsys)
    assert code == 1 and "carries no C2PA manifest (PNG)" in err and "not written by facepaint edit" in err
    (tmp_path / "notes.png").write_text("not an image at all")
    code, _, err = verify_cli(tmp_path / "notes.png", key, capsys)
    assert code == 1 and "is not an image" in err
    (tmp_path / "half.png").write_bytes(out.read_bytes()[:3000])  # truncated inside the image data
    assert not signing.verify(tmp_path / "half.png", key=key).ok
    code, _, err = verify_cli(tmp_path / "missing.png", key, capsys)
    assert code == 1 and "cannot read" in err and "missing.png" in err


def test_a_signer_outside_the_trusted_ca_fails(signed, tmp_path, capsys):
    out, _ = signed
    code, text, err = verify_cli(out, tmp_path / "another-machine", capsys)
    assert code == 1 and "NOT trusted" in text and "is not trusted" in err and "--c2pa-dir" in err
    assert not (tmp_path / "another-machine").exists()  # verify never makes a key


def test_unsigned_output_only_when_asked_and_never_silently(signed, tiny_artifact, tmp_path, monkeypatch, capsys):
    out, key = signed
    photo = str(out.parent / "photo.png")
    args = ["edit", photo, "--prompt", "x", "--mask", str(out.parent / "mask.png"), "--model", str(tiny_artifact.path)]
    assert main([*args, "--steps", "1", "--out", str(tmp_path / "plain.png"), "--no-sign"]) == 0
    code, _, err = verify_cli(tmp_path / "plain.png", key, capsys)
    assert code == 1 and "written with --no-sign" in err
    # without the library an edit fails before any model loads, and writes nothing
    monkeypatch.setitem(sys.modules, "c2pa", None)  # `import c2pa` raises ImportError
    assert main([*args, "--steps", "1", "--out", str(tmp_path / "nolib.png"), "--c2pa-dir", str(tmp_path / "k")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install c2pa-python" in err and "--no-sign" in err
    assert not (tmp_path / "nolib.png").exists()
    # a key directory that cannot be made: one error line, before the model loads
    monkeypatch.delitem(sys.modules, "c2pa")
    (tmp_path / "file").write_text("")
    assert main([*args, "--out", str(tmp_path / "o.png"), "--c2pa-dir", str(tmp_path / "file" / "key")]) == 1
    assert "cannot create the C2PA signing key" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the key


def test_the_key_is_made_once_private_and_reused(tmp_path):
    d = tmp_path / "key"
    first = signing.credentials(d)
    files = {f: (d / f).read_bytes() for f in (signing.CA_FILE, signing.CERT_FILE, signing.KEY_FILE)}
    assert stat.S_IMODE((d / signing.KEY_FILE).stat().st_mode) == 0o600 and stat.S_IMODE(d.stat().st_mode) == 0o700
    png = io.BytesIO()
    Image.fromarray(textured(16, 16)).save(png, format="PNG")
    serials = set()
    for i in range(2):
        (tmp_path / f"{i}.png").write_bytes(signing.sign_png(png.getvalue(), {"prompt": str(i)}, key=d))
        report = signing.verify(tmp_path / f"{i}.png", key=d)
        assert report.ok and report.trusted_by == str(d / "ca.pem") and report.claim == {"prompt": str(i)}
        serials.add(report.signature["cert_serial_number"])
    assert serials == {str(first.serial)} and signing.credentials(d) == first
    assert {f: (d / f).read_bytes() for f in files} == files  # nothing was rewritten

    # a key readable by others is refused, as ssh does
    os.chmod(d / signing.KEY_FILE, 0o644)
    with pytest.raises(signing.SigningError, match="readable by others.*chmod 600"):
        signing.credentials(d)
    os.chmod(d / signing.KEY_FILE, 0o600)
    # a key that is not the certificate's: a clear error, never a silent new key
    other = signing.credentials(tmp_path / "other")
    (d / signing.KEY_FILE).write_bytes(other.key_pem)
    os.chmod(d / signing.KEY_FILE, 0o600)
    with pytest.raises(signing.SigningError, match="is not the key of signer.pem.*delete the directory"):
        signing.credentials(d)
    # a set cut short before ca.pem (written last) is remade before anything is signed with it
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / signing.KEY_FILE).write_bytes(b"half")
    assert signing.credentials(tmp_path / "cut").key_pem != b"half"


def test_the_default_key_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(signing.DIR_ENV, str(tmp_path / "env"))
    assert signing.key_dir() == tmp_path / "env" and signing.key_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(signing.DIR_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert signing.key_dir() == tmp_path / "xdg" / "facepaint" / "c2pa"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert signing.key_dir() == tmp_path / "home" / ".config" / "facepaint" / "c2pa"


def test_processes_making_the_key_at_once_make_one(tmp_path):
    d = tmp_path / "key"
    code = "import sys; from facepaint.editing import signing; print(signing.credentials(sys.argv[1]).serial)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(4)
    ]
    serials = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(serials) == 1
    assert serials == {str(signing.credentials(d).serial)}  # the files on disk are that one, complete set
    assert sorted(p.name for p in d.iterdir()) == [".lock", "ca.pem", "signer.key", "signer.pem"]  # no temporaries


# ------------------------------------------------------------------------------------- the pyfunc model


def test_the_pyfunc_model_returns_signed_bytes(tiny_artifact, tmp_path, c2pa_key_dir):
    import pandas as pd

    from facepaint.editing.editor import FaceEditor
    from tracking.pyfunc_model import FacepaintModel

    model = FacepaintModel()
    model.editor = FaceEditor.from_artifact(tiny_artifact.path, device="cpu")  # what load_context builds
    photo, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(textured(96, 80, seed=1)).save(photo, format="PNG")
    Image.fromarray(box_mask(96, 80, 20, 70, 15, 65).astype(np.uint8) * 255).save(mask, format="PNG")
    frame = pd.DataFrame({"image": [photo.getvalue()], "prompt": ["an old face"], "mask": [mask.getvalue()]})
    out = model.predict(None, frame, params={"steps": 1, "watermark": True})
    (tmp_path / "served.png").write_bytes(out["image"][0])
    report = signing.verify(tmp_path / "served.png")  # the server's key: $FACEPAINT_C2PA_DIR
    assert report.ok, report.problems
    assert report.trusted_by == str(c2pa_key_dir / "ca.pem") and report.claim == json.loads(out["provenance"][0])
    assert report.claim["prompt"] == "an old face" and report.watermark[0]["z"] > wm.THRESHOLD


def test_the_apps_download_is_signed(signed, tiny_artifact, tmp_path):
    from facepaint.apps.web import App, AppConfig, EditRequest

    out, _ = signed
    app = App(AppConfig(str(tiny_artifact.path), examples=None, workdir=str(tmp_path), releases=False))
    photo, mask = out.parent / "photo.png", out.parent / "mask.png"
    args = dict(faces="all", min_face=64, negative_prompt="", seed=0, steps=1, guidance_scale=7.5, strength=1)
    request = EditRequest(photo, None, mask, prompt="an old face", blend=True, watermark=False, **args)
    _, png, provenance, _ = app.edit(request)
    report = signing.verify(png)  # the app's key: $FACEPAINT_C2PA_DIR
    assert report.ok and report.claim == provenance and report.claim["source"] == "photo.png"
