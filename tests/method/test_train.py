"""The train stage: what is trainable, reproducibility, kill-and-resume, DDP."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from facepaint.data.masks import MaskConfig
from facepaint.data.training_set import load_training_set
from facepaint.method.adapter import FaceAdapter
from facepaint.method.artifact import Conditions, freeze_all_but_kv
from facepaint.method.models import SD15_TEXT, SD15_UNET, ModelConfig
from facepaint.method.train import TrainConfig, conditions, draw_step, trainable_counts
from tests.helpers import config

REPO = Path(__file__).resolve().parents[2]
# Small but not trivial: 16 images per epoch at batch 4 -> several epochs in 24 steps.
TRAIN = dict(batch_size=4, max_steps=24, checkpoint_every=4, log_every=2, keep_checkpoints=2)
MODEL = config("model", ModelConfig)  # the demo's tiny random model


def tcfg(**changes) -> TrainConfig:
    """The demo's train params with this module's small run (TRAIN) and `changes`."""
    return config("train", TrainConfig, **{**TRAIN, **changes})


def test_sd15_trainable_parameters_without_download():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        adapter = FaceAdapter(SD15_TEXT["hidden_size"])
    freeze_all_but_kv(unet)
    counts = trainable_counts(unet, adapter)
    assert counts["kv"] == 19_169_280  # 16 transformer blocks x (to_k + to_v), 768 -> {320, 640, 1280}
    assert counts["adapter"] == 2 * 768 * 768 == 1_179_648
    assert counts["frozen"] + counts["kv"] == 859_535_364  # the whole SD1.5 inpainting UNet
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert len(trainable) == 32 and all(n.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for n in trainable)
    assert not any("attn1" in n or "to_q" in n or "to_out" in n for n in trainable)


def test_draws_depend_only_on_seed_and_step(demo_project):
    data = load_training_set(demo_project / "data/latents", demo_project / "data/captions.parquet")
    cfg = tcfg()
    a, b = draw_step(data, cfg, 7, 4, 1000), draw_step(data, cfg, 7, 4, 1000)
    assert torch.equal(a.noise, b.noise) and a.caption == b.caption and torch.equal(a.index, b.index)
    c = draw_step(data, cfg, 8, 4, 1000)
    assert not torch.equal(a.noise, c.noise)
    # One epoch visits every image once; flips and captions are drawn per image and step.
    seen = torch.cat([draw_step(data, cfg, s, 4, 1000).index for s in range(4)])
    assert sorted(seen.tolist()) == list(range(16))
    flips = torch.cat([draw_step(data, cfg, s, 4, 1000).flip for s in range(40)]).float().mean()
    assert 0.3 < flips < 0.7
    for i, cap in zip(a.index.tolist(), a.caption):
        assert cap in data.captions[i]


def _write_params(project: Path, work: Path, **train) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"] = {**params["train"], **TRAIN, **train}
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / "data").mkdir(exist_ok=True)
    for name in ("latents", "captions.parquet"):
        if not (work / "data" / name).exists():
            os.symlink(project / "data" / name, work / "data" / name)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _weights(work: Path) -> dict:
    out = load_file(str(work / "data/model/kv.safetensors"))
    out.update({f"adapter.{k}": v for k, v in load_file(str(work / "data/model/adapter.safetensors")).items()})
    return out


def _log(work: Path) -> list:
    import pandas as pd

    return pd.read_csv(work / "data/train/log.csv")[["step", "loss", "lr_kv"]].values.tolist()


def _train_here(project: Path, work: Path) -> None:
    """The train stage in this process, on one thread as the subprocesses (OMP_NUM_THREADS=1): CPU reductions
    depend on the thread count."""
    from stages import train as stage

    _write_params(project, work)
    os.chdir(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = yaml.safe_load(Path("params.yaml").read_text())
        stage.run(MODEL, config("train", TrainConfig, **params["train"]), progress=False)
    finally:
        torch.set_num_threads(threads)
        os.chdir(REPO)


@pytest.fixture(scope="module")
def uninterrupted(demo_project, tmp_path_factory):
    """The reference run (in this process; the SIGKILL and DDP tests compare their processes' runs with it)."""
    work = tmp_path_factory.mktemp("whole")
    _train_here(demo_project, work)
    return work


def test_training_changes_only_kv_and_adapter_and_is_repeatable(uninterrupted, demo_project, tmp_path):
    from facepaint.method.models import tiny_components

    info = json.loads((uninterrupted / "data/model/facepaint.json").read_text())
    c = info["conditions"]  # what the editor must reproduce: from params.yaml and the data's lineage
    assert info["steps"] == 24 and c["model"]["source"] == "tiny" and c["adapter_scale"] == 0.3
    assert c["resolution"] == 64 and c["latent_factor"] == 8
    assert "sigma" not in c  # a sampling option (params.yaml `sampling`), not a condition of training
    assert c["parts"] == list(config("masks", MaskConfig).parts) and c["mask_backend"] == "annotations"
    from facepaint.editing.editor import FaceEditor

    editor = FaceEditor.from_artifact(uninterrupted / "data/model", device="cpu")
    assert editor.conditions == Conditions.from_dict(c) and editor.conditions.resolution == 64
    assert editor.artifact.version == info["version"]
    w = _weights(uninterrupted)
    base = dict(tiny_components(seed=0, parts=("unet",)).unet.named_parameters())
    kv = {k: v for k, v in w.items() if not k.startswith("adapter.")}
    assert set(kv) == {n for n in base if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}
    assert all(not torch.equal(kv[k], base[k].detach()) for k in kv)  # every k/v moved
    assert torch.count_nonzero(w["adapter.w2.weight"]) > 0  # the adapter left its zero init
    metrics = json.loads((uninterrupted / "data/train/metrics.json").read_text())
    assert metrics["trainable_parameters"]["kv"] == sum(v.numel() for v in kv.values())
    assert not list((uninterrupted / "data/checkpoints").glob("step-*"))  # cleaned up when done
    # Again, same params and thread count: the same weights bit for bit (across processes: the SIGKILL test).
    _train_here(demo_project, tmp_path)
    again = _weights(tmp_path)
    assert all(torch.equal(again[k], w[k]) for k in w)


@pytest.mark.slow  # ~20 s; the resume itself is checked in-process by tests/test_faults.py's damaged-checkpoint runs
def test_sigkill_then_resume_is_bit_identical(uninterrupted, demo_project, tmp_path):
    """A real SIGKILL part-way through, then the same command again: the resumed run ends with the
    weights (and logged losses) of the uninterrupted run, bit for bit."""
    _write_params(demo_project, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.train"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "data/checkpoints/step-00000008/state.json"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "data/model").exists()  # killed before the artifact
    done = sorted(p.name for p in (tmp_path / "data/checkpoints").glob("step-*"))
    assert done and done[-1] < "step-00000024"
    resumed = subprocess.run(
        [sys.executable, "-m", "stages.train"], cwd=tmp_path, env=_env(), capture_output=True, text=True, check=True
    )
    assert "resuming from" in resumed.stderr
    a, b = _weights(uninterrupted), _weights(tmp_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _log(uninterrupted) == _log(tmp_path)


def test_changed_params_do_not_resume_a_stale_checkpoint(demo_project, tmp_path):
    from stages import train as stage

    _write_params(demo_project, tmp_path)
    os.chdir(tmp_path)
    try:
        stage.run(MODEL, tcfg(max_steps=8), progress=False, stop_after=4)
        assert (tmp_path / "data/checkpoints/step-00000004").is_dir()
        stage.run(MODEL, tcfg(max_steps=8, lr_kv=1e-3), progress=False, stop_after=2)
        assert sorted(p.name for p in (tmp_path / "data/checkpoints").glob("step-*")) == ["step-00000002"]
    finally:
        os.chdir(REPO)


@pytest.mark.slow  # two processes on the 2-core CI machine: about 18 s of the default run's 10 minutes
def test_two_process_ddp_matches_one_process(uninterrupted, demo_project, tmp_path):
    """`accelerate launch` with 2 CPU processes (torchrun + gloo DDP) runs the stage unchanged; each
    process takes half of the same global batch, so the result equals the single-process run up to
    float rounding. (accelerate's `--cpu` flag would start one process unless mpirun is installed.)"""
    _write_params(demo_project, tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "stages.train",
    ]
    subprocess.run(cmd, cwd=tmp_path, env=_env(), check=True, capture_output=True, timeout=600)
    metrics = json.loads((tmp_path / "data/train/metrics.json").read_text())
    assert metrics["processes"] == 2
    a, b = _weights(uninterrupted), _weights(tmp_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    losses = [r[1] for r in _log(uninterrupted)], [r[1] for r in _log(tmp_path)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def raw(**changes) -> dict:
    return {**asdict(tcfg()), **changes}


def test_config_validation():
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(**raw(mixed_precision="fp8"))
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(**raw(batch_size=0))
    with pytest.raises(TypeError):
        TrainConfig()  # no hidden defaults: every setting comes from params.yaml


def test_gradient_checkpointing_gives_the_same_training(demo_project, tmp_path):
    """A speed/memory knob must not change the result (beyond float rounding)."""
    from facepaint.method.models import load_components
    from facepaint.method.train import train

    data = load_training_set(demo_project / "data/latents", demo_project / "data/captions.parquet")
    out = {}
    for gc in (False, True):
        comps = load_components(MODEL, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
        cfg = tcfg(max_steps=3, gradient_checkpointing=gc)
        res = train(
            comps,
            data,
            cfg,
            conditions(MODEL, data, cfg),
            tmp_path / f"m{gc}",
            tmp_path / f"c{gc}",
            progress=False,
        )
        out[gc] = res.artifact.kv
    assert all(torch.allclose(out[False][k], out[True][k], atol=1e-6) for k in out[False])


# ------------------------------------------------------------------------------------ speed knobs


def _one_step_loss(demo_project, amp=None, **knobs):
    """The loss of step 3 on the demo cache with a fresh tiny model and the given speed knobs."""
    from facepaint.method.models import load_components
    from facepaint.method.train import Batches, build_model, step_loss

    data = load_training_set(demo_project / "data/latents", demo_project / "data/captions.parquet")
    cfg = tcfg(**knobs)
    comps = load_components(MODEL, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(comps.scheduler.config)
    model, _ = build_model(comps, cfg, "cpu", amp)
    with torch.no_grad():  # W2 starts at 0: make the adapter count, the same way in every call
        model.adapter.w2.weight.copy_(
            0.02 * torch.randn(model.adapter.w2.weight.shape, generator=torch.Generator().manual_seed(1))
        )
    batches = Batches(data, comps.tokenizer, "cpu", on_device=cfg.cache_on_device)
    b = batches(draw_step(data, cfg, 3, len(data) // cfg.batch_size, 1000))
    autocast = (lambda: torch.autocast("cpu", dtype=amp)) if amp else None
    loss = step_loss(model, comps.text_encoder, sched, b, cfg, *([autocast] if autocast else []))
    return loss, model, b


def test_speed_knobs_keep_the_loss(demo_project):
    """attention, channels_last and the cache placement change speed, not the math (fp32, CPU)."""
    ref, model, _ = _one_step_loss(demo_project)
    assert torch.isfinite(ref) and ref > 0
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    assert all(isinstance(p, AttnProcessor2_0) for p in model.unet.attn_processors.values())
    classic, model, _ = _one_step_loss(demo_project, attention="classic")
    assert all(isinstance(p, AttnProcessor) for p in model.unet.attn_processors.values())
    # SDPA and the explicit softmax sum in other orders: 6e-8 relative measured here
    assert torch.allclose(ref, classic, rtol=1e-5), (ref.item(), classic.item())
    cl, model, _ = _one_step_loss(demo_project, channels_last=True)
    assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(ref, cl, rtol=1e-5), (ref.item(), cl.item())  # NHWC conv kernels (equal here)
    host, _, _ = _one_step_loss(demo_project, cache_on_device=False)
    assert torch.equal(ref, host)


def test_uniform_loss_weighting_is_the_plain_mse_of_the_same_step(demo_project):
    """train.loss_weighting: uniform (the ablation) changes the loss of the very same step and prediction
    from the mask-weighted one to the plain MSE."""
    masked, model, b = _one_step_loss(demo_project)
    uniform, _, _ = _one_step_loss(demo_project, loss_weighting="uniform")
    assert torch.isfinite(uniform) and not torch.allclose(masked, uniform)
    with pytest.raises(ValueError, match="train.loss_weighting"):
        TrainConfig(**raw(loss_weighting="focal"))


def test_half_frozen_weights_give_the_autocast_result(demo_project):
    """Frozen Linear/Conv weights stored in bf16 = autocast's own casts: the same loss, bit for bit;
    k/v (trainable) and norms stay fp32."""
    full, _, _ = _one_step_loss(demo_project, amp=torch.bfloat16, half_frozen=False)
    half, model, _ = _one_step_loss(demo_project, amp=torch.bfloat16, half_frozen=True)
    unet = model.unet
    assert unet.conv_in.weight.dtype == torch.bfloat16
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    kv = [p for p in unet.parameters() if p.requires_grad]
    assert kv and all(p.dtype == torch.float32 for p in kv)
    assert unet.conv_norm_out.weight.dtype == torch.float32
    assert torch.equal(full, half), (full, half)
    half.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in kv)


def test_batches_flip_the_mask_with_the_latents_and_tokenise_once(demo_project):
    from facepaint.method.models import load_components
    from facepaint.method.train import Batches

    data = load_training_set(demo_project / "data/latents", demo_project / "data/captions.parquet")
    tok = load_components(MODEL, parts=("tokenizer",)).tokenizer
    batches = Batches(data, tok, "cpu")
    cfg = tcfg(flip_p=0.5)
    d = next(d for s in range(50) if (d := draw_step(data, cfg, s, 4, 1000)).flip.any() and not d.flip.all())
    b = batches(d)
    for j, (i, f) in enumerate(zip(d.index.tolist(), d.flip.tolist())):
        mask = data.latent_mask[i].float()
        assert torch.equal(b.mask[j], mask.flip(-1) if f else mask)
        assert torch.equal(b.latents[j], data.latents[i, int(f)].float())
    ids = tok(
        d.caption, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    assert torch.equal(b.input_ids, ids)
    assert set(batches._ids) == set(d.caption)
    assert torch.equal(b.noise, d.noise) and torch.equal(b.timesteps, d.timesteps)


def test_speed_knobs_are_validated_and_do_not_change_the_fingerprint():
    with pytest.raises(ValueError, match="train.attention"):
        TrainConfig(**raw(attention="flash"))
    with pytest.raises(ValueError, match="train.compile"):
        TrainConfig(**raw(compile="fast"))
    assert tcfg(compile=True).compile == "default" and tcfg(compile=False).compile == "off"
    base = tcfg().fingerprint_fields()
    fast = tcfg(
        compile="max-autotune",
        attention="classic",
        channels_last=True,
        half_frozen=False,
        fused_adamw=False,
        cache_on_device=False,
        gradient_checkpointing=True,
    ).fingerprint_fields()
    assert base == fast
    assert tcfg(lr_kv=1e-3).fingerprint_fields() != base


@pytest.mark.slow
def test_compiled_training_matches_eager(demo_project, tmp_path):
    """train.compile really compiles (inductor, CPU here) and learns what eager mode learns."""
    from facepaint.method.models import load_components
    from facepaint.method.train import train

    torch._dynamo.reset()
    data = load_training_set(demo_project / "data/latents", demo_project / "data/captions.parquet")
    out = {}
    for mode in ("off", "default"):
        comps = load_components(MODEL, parts=("unet", "text_encoder", "tokenizer", "scheduler"))
        cfg = tcfg(max_steps=3, compile=mode)
        res = train(
            comps,
            data,
            cfg,
            conditions(MODEL, data, cfg),
            tmp_path / mode,
            tmp_path / f"c{mode}",
            progress=False,
        )
        out[mode] = (res.artifact.kv, res.history[-1]["loss"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # something was compiled
    kv_eager, kv_compiled = out["off"][0], out["default"][0]
    assert all(torch.allclose(kv_eager[k], kv_compiled[k], atol=1e-5) for k in kv_eager)
    assert out["off"][1] == pytest.approx(out["default"][1], rel=1e-4)
