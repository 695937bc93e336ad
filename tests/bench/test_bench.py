"""The benchmarks stay runnable on a CPU-only machine (issue 6) and print their tables: each runs here
with the smallest settings, into a temporary json, and its figures are checked for sense, as are the
settings it took from params.yaml (on a CPU: no profile, params.yaml's demo values). Speed itself is
never asserted (that is what the benchmarks are for)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def run_bench(name: str, tmp_path: Path, *args: str) -> tuple[str, dict]:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--device", "cpu", "--out", str(out), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\n$ bench/{name}.py {' '.join(args)}\n{proc.stdout}")  # the table (`pytest -s` shows it)
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow  # each runs its benchmark end to end in a new process (15-30 s): --runslow
def test_train_bench(tmp_path):
    stdout, result = run_bench(
        "train", tmp_path, "--steps", "1", "--warmup", "1", "--variants", "baseline,default+classic"
    )
    assert "samples/s" in stdout and "baseline" in stdout and "default+classic" in stdout
    full = result["flops_per_sample"]["full_config"]
    # SD1.5 at 512 px (the paper profile), counted on the meta device: UNet fwd + bwd + text encoder fwd
    assert full["per_sample"] == pytest.approx(1.686e12, rel=2e-3)
    assert full["per_sample"] == full["unet_fwd"] + full["unet_bwd"] + full["text_encoder_fwd"]
    # the settings are params.yaml's (no profile on a CPU)
    s, train = result["settings"], PARAMS["train"]
    assert s["profile"] is None and s["model"]["source"] == PARAMS["model"]["source"]
    assert s["batch"] == train["batch_size"] and s["px"] == PARAMS["masks"]["resolution"]
    assert s["latent"] == PARAMS["masks"]["resolution"] // PARAMS["masks"]["latent_factor"]
    assert {k: v for k, v in s["train_config"].items() if k != "compile"} == {
        k: v for k, v in train.items() if k != "compile"
    }
    rows = {r["variant"]: r for r in result["results"]}
    assert rows["baseline"]["attention"] == "classic" and rows["baseline"]["cache_on_device"] is False
    assert rows["baseline"]["mixed_precision"] == "no" and rows["baseline"]["compile"] == "off"
    assert rows["default+classic"]["attention"] == "classic"
    assert rows["default+classic"]["half_frozen"] is train["half_frozen"]  # the rest as params.yaml says
    for r in rows.values():
        assert "error" not in r, r
        assert r["samples_per_s"] > 0 and math.isfinite(r["mean_loss"])
        assert r["tflops_per_s"] == pytest.approx(
            result["flops_per_sample"]["this_config"]["per_sample"] * r["samples_per_s"] / 1e12
        )
    assert result["target"]["judged"] is False  # the target is for the paper's config on a GPU


def test_train_bench_refuses_an_unknown_variant(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "train.py"),
            "--device",
            "cpu",
            "--variants",
            "default+turbo",
            "--out",
            str(tmp_path / "x.json"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "unknown variant 'default+turbo'" in proc.stderr


@pytest.mark.slow  # each runs its benchmark end to end in a new process (15-30 s): --runslow
def test_edit_bench(tmp_path):
    stdout, result = run_bench(
        "edit", tmp_path, "--steps", "2", "--batch", "2", "--repeats", "1", "--variants", "baseline", "optimized"
    )
    assert "s/edit" in stdout and "model FLOPs per edit" in stdout
    rows = result["results"]
    assert {(r["variant"], r["batch"]) for r in rows} == {
        ("baseline", 1),
        ("baseline", 2),
        ("optimized", 1),
        ("optimized", 2),
    }
    f = result["flops"]
    assert f["per_edit"]["2"] == 2 * f["unet_guided_step"] + f["vae_encode"] + f["vae_decode"] + 2 * f["text_encoder"]
    for r in rows:
        assert r["seconds_per_call"] > 0 and r["images_per_s"] == pytest.approx(
            r["batch"] / r["seconds_per_call"], rel=1e-2
        )
    assert result["targets"]["evaluated"] is False
    # the settings are params.yaml's, and each variant ran as asked (the editor's resolved runtime)
    s, masks, sampling = result["settings"], PARAMS["masks"], PARAMS["sampling"]
    assert s["profile"] is None and s["resolution"] == masks["resolution"]
    # how the edits sample and blend: params.yaml's `sampling` (the step counts are the benchmark's own)
    assert {k: s[k] for k in sampling if k != "steps"} == {k: v for k, v in sampling.items() if k != "steps"}
    assert s["steps"] == [2]
    c = s["conditions"]
    assert (c["parts"], c["adapter_scale"]) == (masks["parts"], PARAMS["train"]["adapter_scale"])
    assert "sigma" not in c  # a sampling option, not a condition of the artifact
    runtime = {k: v["runtime"] for k, v in s["variants"].items()}
    assert runtime["baseline"] == {
        "device": "cpu",
        "dtype": "fp32",
        "attention": "classic",
        "channels_last": False,
        "compile": "off",
    }
    assert runtime["optimized"] == {
        "device": "cpu",
        "dtype": "fp32",
        "attention": "sdpa",
        "channels_last": False,
        "compile": "off",
    }  # Speed's defaults on a CPU


@pytest.mark.slow  # each runs its benchmark end to end in a new process (15-30 s): --runslow
def test_precompute_bench(tmp_path):
    # `--data demo`: a generated set (tools/demo.py), so the test needs no ../shared fixture
    stdout, result = run_bench("precompute", tmp_path, "--data", "demo", "--n", "4", "--batch", "2", "--workers", "0")
    assert "masks/s" in stdout and "latents/s" in stdout
    what = {(r["metric"], r["what"]) for r in result["results"]}
    assert {
        ("masks/s", "annotations"),
        ("masks/s", "bisenet fp32"),
        ("latents/s", "tiny VAE"),
        ("latents/s", "SD1.5 VAE"),
    } <= what
    assert all(r["per_s"] > 0 for r in result["results"])
    assert all(r["px"] == PARAMS["masks"]["resolution"] for r in result["results"])
    assert result["profile"] is None and result["masks"]["batch_size"] == 2 and result["latents"]["workers"] == 0
    f = result["flops_per_item_512px"]
    assert f["latent_image"] == 4 * f["vae_encode"] and f["vae_encode"] == pytest.approx(1.1167e12, rel=2e-3)
