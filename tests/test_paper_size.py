"""The paper-size path: the full SD1.5 inpainting architecture (random weights) saved in the diffusers
layout and loaded through `model.source: pretrained`, the paper profile's settings at 512 px, on four
real fixture photos: masks, captions, latents, train (2 steps), evaluate (2 pairs, 2 steps), register
(tracked in a sqlite MLflow store) and one `facepaint edit` of the registered champion (with SD1.5's
full-size safety checker, random, in the model's directory; the output's C2PA manifest verified). Defects that the
tiny model hides (shapes, dtypes, memory, the real loading code, logging a 4 GB model's artifact) show up
here. About 12 minutes and 11 GB of memory on 2 CPU cores: run with --runslow. It prints each stage's time
and the share of the train stage that tracking took."""

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facepaint.data.captions import CaptionConfig
from facepaint.data.celebamask import ATTRIBUTE_FILE, image_path, part_mask_path, read_attributes
from facepaint.data.latents import LatentConfig
from facepaint.data.masks import MaskConfig
from facepaint.data.split import SplitConfig, split_ids
from facepaint.evaluation.run import EvalConfig
from facepaint.method.blend import sigma_pixels
from facepaint.method.models import (
    ModelConfig,
    random_safety_checker,
    save_pipeline,
    save_safety_checker,
    sd15_random_components,
)
from facepaint.method.options import SamplingOptions
from facepaint.method.train import TrainConfig
from stages import captions, evaluate, latents, masks, register, split, train
from stages.common import load_params, section
from stages.register import RegisterConfig

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.fixture]


def mini_dataset(fixture_root: Path, root: Path) -> list[int]:
    """Two train and two test photos of the fixture (by the seed-42 split) with their part masks, and the
    full attribute file: a partial download, as a user's would be."""
    attrs = read_attributes(fixture_root / ATTRIBUTE_FILE)
    present = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    splits = split_ids(attrs.ids, SplitConfig(seed=42, train_parts=2, test_parts=1, max_malformed_fraction=0.01))
    ids = [i for i in present if splits[i] == "train"][:2] + [i for i in present if splits[i] == "test"][:2]
    (root / "CelebA-HQ-img").mkdir(parents=True)
    shutil.copy2(fixture_root / ATTRIBUTE_FILE, root / ATTRIBUTE_FILE)
    for i in ids:
        shutil.copy2(image_path(fixture_root, i), image_path(root, i))
        for part_file in part_mask_path(fixture_root, i, "skin").parent.glob(f"{i:05d}_*.png"):
            dst = part_mask_path(root, i, "skin").parent / part_file.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(part_file, dst)
    return ids


def test_the_paper_profile_runs_on_the_full_size_architecture(
    fixture_root, tmp_path, monkeypatch, random_bisenet_weights
):
    seconds = {}

    class timed:  # seconds[name] = the block's wall time
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            seconds[self.name] = round(time.perf_counter() - self.t, 1)

    ids = mini_dataset(fixture_root, tmp_path / "CelebAMask-HQ")
    weights = tmp_path / "sd15-inpainting-random"
    with timed("save the base model"):
        save_pipeline(sd15_random_components(seed=0), weights)
        save_safety_checker(*random_safety_checker(seed=0, full_size=True), weights)  # as SD1.5 ships one
    assert (weights / "unet" / "diffusion_pytorch_model.safetensors").is_file()

    params = load_params(REPO / "params.yaml", profile="paper")  # the paper's settings, then what a CPU can do
    root = tmp_path / "CelebAMask-HQ"
    model = section(params, "model", ModelConfig, pretrained=str(weights))
    assert model.source == "pretrained"
    # the paper's masks come from the parser (random BiSeNet weights here: the real ones cannot be downloaded)
    mask_cfg = section(
        params, "masks", MaskConfig, batch_size=2, workers=0, bisenet_weights=str(random_bisenet_weights)
    )
    assert (mask_cfg.resolution, mask_cfg.backend) == (512, "bisenet")
    # how the evaluation samples and blends: the paper profile's 50 steps cut to 2; sigma 4 px of a 512 px crop
    sampling = section(params, "sampling", SamplingOptions, steps=2)
    assert sampling.sigma == 4.0 and sigma_pixels(sampling.sigma, mask_cfg.resolution) == 4.0
    monkeypatch.chdir(tmp_path)
    # tracked, as a pipeline run is: train opens the run, evaluate logs into it, register logs the model
    monkeypatch.setenv("FACEPAINT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking_s = []
    track = train.track

    def timed_track(*args, **kwargs):
        t = time.perf_counter()
        track(*args, **kwargs)
        tracking_s.append(time.perf_counter() - t)

    monkeypatch.setattr(train, "track", timed_track)
    split.run(root, section(params, "split", SplitConfig))
    with timed("masks"):
        table = masks.run(root, mask_cfg, progress=False)
    iou = json.loads(Path("data/masks_metrics.json").read_text())["iou_parser_vs_annotations"]
    assert iou["images"] == len(table) == 4 and table["iou_annotations"].between(0, 1).all()
    with timed("captions"):
        captions.run(root, section(params, "captions", CaptionConfig))
    with timed("latents"):
        index = latents.run(
            root, model, section(params, "latents", LatentConfig, batch_size=2, workers=0), progress=False
        )
    assert index["count"] == 2 and index["latent_shape"] == [4, 64, 64] and index["resolution"] == 512

    with timed("train"):
        result = train.run(
            model,
            section(params, "train", TrainConfig, batch_size=2, max_steps=2, log_every=1, checkpoint_every=0),
            progress=False,
        )
    assert result.metrics["steps"] == 2 and len(tracking_s) == 1
    c = result.artifact.conditions
    assert (c.model, c.resolution, c.adapter_scale) == (model, 512, 0.3)
    assert "sigma" not in c.as_dict()  # a sampling option, not a condition of training
    assert sum(v.numel() for v in result.artifact.kv.values()) == 19_169_280  # SD1.5's k/v

    cfg = section(
        params,
        "evaluate",
        EvalConfig,
        n_pairs=2,
        warmup=0,
        methods=["ours"],
        metrics=["psnr"],
        grid_photos=1,
        fid_reference_size=2,
        dtype="fp32",
    )
    with timed("evaluate"):
        metrics = evaluate.run(root, cfg, sampling, progress=False)
    ours = metrics["methods"]["ours"]
    assert metrics["resolution"] == 512 and ours["changed_outside_soft"] == 0 and ours["psnr_outside_soft"] == "inf"
    assert ours["pairs"] == 2, ours

    with timed("register"):
        outcome = register.run(section(params, "register", RegisterConfig))
    assert outcome["registered"] and outcome["version"] == 1 and outcome["promoted"], outcome
    with timed("register again"):  # a rerun registers the same version, once
        assert register.run(section(params, "register", RegisterConfig))["version"] == 1
    import mlflow

    from tracking.registry import pip_requirements

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/facepaint@champion"))
    logged = json.loads(next(local.rglob("facepaint.json")).read_text())
    assert logged["version"] == result.artifact.version
    example = json.loads((local / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["image", "prompt", "mask"]
    reqs = (local / "requirements.txt").read_text().split()
    assert set(pip_requirements()) <= set(reqs) and any(r.startswith("torch==") for r in reqs)

    from facepaint.apps.cli import main

    photo = image_path(root, ids[-1])
    face = np.zeros(Image.open(photo).size[::-1], np.uint8)
    face[150:380, 160:350] = 255
    Image.fromarray(face).save(tmp_path / "face.png")
    with timed("edit"):
        code = main(
            [
                "edit",
                str(photo),
                "--prompt",
                "a smiling woman with blond hair",
                "--out",
                str(tmp_path / "out.png"),
                "--mask",
                str(tmp_path / "face.png"),
                "--steps",
                "2",
                "--model",
                "models:/facepaint@champion",
            ]
        )
    assert code == 0
    from facepaint.editing.provenance import read_provenance

    prov = read_provenance(tmp_path / "out.png")
    assert prov["artifact_version"] == result.artifact.version and prov["resolution"] == 512 and prov["sigma"] == 4.0
    assert prov["safety_checker"] == "ran"  # the full-size CLIP ViT-L/14 checker, on the generated crop
    assert main(["verify", str(tmp_path / "out.png")]) == 0  # its signed C2PA manifest
    edited, original = np.asarray(Image.open(tmp_path / "out.png")), np.asarray(Image.open(photo).convert("RGB"))
    x0, y0, x1, y1 = prov["region"]
    outside = np.ones(face.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(edited[outside], original[outside])
    share = tracking_s[0] / seconds["train"]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "train_tracking_s": round(tracking_s[0], 1),
                "train_tracking_share": round(share, 3),
                "register_share_of_train": round(seconds["register"] / seconds["train"], 3),
                "ids": ids,
                "version": result.artifact.version,
                "ours": ours,
                "iou": iou,
            },
            default=str,
        )
    )
    assert share < 0.10, f"tracking took {share:.0%} of the train stage"


def test_the_sd15_baselines_run_on_their_full_size_architectures(fixture_root, tmp_path):
    """Blended Latent Diffusion (4-channel SD1.5) and BrushNet at 512 px: the full-size text-to-image SD1.5 and
    BrushNet with random weights, saved in their published layouts and loaded through `build_methods`."""
    from facepaint.common.images import load_rgb, resize_rgb
    from facepaint.data.masks import annotation_union
    from facepaint.evaluation.methods.base import EditInput
    from facepaint.evaluation.methods.brushnet import save_tiny_brushnet
    from facepaint.evaluation.methods.registry import build_methods
    from facepaint.method.adapter import FaceAdapter
    from facepaint.method.artifact import freeze_all_but_kv, save_artifact
    from facepaint.method.blend import soft_mask
    from facepaint.method.masks import face_mask
    from facepaint.method.models import save_tiny_t2i, tiny_components
    from tests.helpers import tiny_conditions

    save_tiny_t2i(tmp_path / "sd15", seed=0, full_size=True)
    save_tiny_brushnet(tmp_path / "brushnet", seed=0, full_size=True)
    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))  # only the artifact's conditions are read
    freeze_all_but_kv(comps.unet)
    artifact = save_artifact(
        tmp_path / "model", comps.unet, FaceAdapter(comps.text_encoder.config.hidden_size), tiny_conditions(512)
    )
    params = load_params(REPO / "params.yaml", profile="paper")
    cfg = section(params, "evaluate", EvalConfig, dtype="fp32")
    options = section(params, "sampling", SamplingOptions, steps=2)
    sd15 = str(tmp_path / "sd15")
    baselines = replace(cfg.baselines, sd15_t2i=sd15, brushnet_base=sd15, brushnet=str(tmp_path / "brushnet"))
    names = ["blended_latent_diffusion", "brushnet"]
    methods, unavailable = build_methods(
        names,
        artifact.path,
        options,
        device="cpu",
        dtype="fp32",
        baselines=baselines,
        brushnet=replace(cfg.brushnet, steps=2),
        diptych=cfg.diptych,
        blended_latent=replace(cfg.blended_latent, base="sd15_t2i", steps=2),  # its SD1.5 variant ([ours])
    )
    assert list(methods) == names and unavailable == {}
    assert tuple(methods["brushnet"].brushnet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert methods["blended_latent_diffusion"].unet.config.in_channels == 4

    i = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[0]
    image = resize_rgb(load_rgb(image_path(fixture_root, i)).image, 512)
    parts = section(params, "masks", MaskConfig).parts
    fm = face_mask(annotation_union(fixture_root, i, parts)[0], 512, 8)
    soft = soft_mask(fm.mask, sigma_pixels(options.sigma, 512))
    x = EditInput(image, fm.mask, soft, fm.beta, "a smiling woman with blond hair", 0)
    for name, m in methods.items():
        out = m.edit(x)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8, name
        assert (out[fm.mask] != image[fm.mask]).any(), name


def test_a_folder_of_photos_trains_on_the_full_size_architecture(
    fixture_root, tmp_path, monkeypatch, random_bisenet_weights
):
    """data.layout: folder at the paper profile's sizes: four fixture portraits made into a user's messy folder
    (re-encoded, shrunk, EXIF-rotated, one pasted rolled onto a larger canvas), the faces stage's 512 px crops with
    BiSeNet's masks (random weights), the split by photo, the crops' masks, captions from NAME.txt or the
    fallback, the full-size VAE's latents and 2 training steps of the full-size UNet. About 4 minutes."""
    from facepaint.data.faces import FacesConfig
    from stages import faces
    from stages.common import FACES
    from tools.composites import portrait_landmarks
    from tools.photo_folder import photo_folder

    portraits = []
    for i in sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:8]:
        im = np.asarray(Image.open(image_path(fixture_root, i)).convert("RGB"))
        lm, _, _ = portrait_landmarks(fixture_root, i, im.shape[0])
        if lm is not None and len(portraits) < 4:
            portraits.append((im, lm[:2]))
    photo_folder(tmp_path / "photos", portraits, seed=0, broken=False)
    weights = tmp_path / "sd15-inpainting-random"
    save_pipeline(sd15_random_components(seed=0), weights)
    params = load_params(REPO / "params.yaml", profile="paper")
    model = section(params, "model", ModelConfig, pretrained=str(weights))
    monkeypatch.chdir(tmp_path)
    t = time.perf_counter()
    fcfg = section(params, "faces", FacesConfig, mask_backend="bisenet", device="cpu")
    assert fcfg.size == 512
    index = faces.run(
        tmp_path / "photos", "folder", fcfg, params["masks"]["parts"], bisenet_weights=str(random_bisenet_weights)
    )
    assert len(index) == 4 and set(index.mask_from) == {"bisenet"}
    split.run_folder(section(params, "split", SplitConfig, train_parts=1, test_parts=1))
    from stages.common import dataset

    ds = dataset({"data": {"root": str(tmp_path / "photos"), "layout": "folder"}})
    assert ds.root == FACES
    mask_cfg = section(params, "masks", MaskConfig, backend="annotations", batch_size=2, workers=0)
    table = masks.run(ds, mask_cfg, progress=False)
    assert len(table) == 4 and table.beta.between(0.01, 0.99).all()  # random BiSeNet weights: any face ratio
    captions.run(tmp_path / "photos", section(params, "captions", CaptionConfig), layout="folder")
    index_ = latents.run(ds, model, section(params, "latents", LatentConfig, batch_size=2, workers=0), progress=False)
    assert index_["latent_shape"] == [4, 64, 64] and index_["resolution"] == 512 and index_["count"] >= 1
    result = train.run(
        model,
        section(params, "train", TrainConfig, batch_size=2, max_steps=2, log_every=1, checkpoint_every=0),
        progress=False,
    )
    assert result.metrics["steps"] == 2
    print(json.dumps({"folder_pipeline_s": round(time.perf_counter() - t, 1), "faces": len(index)}))


def test_blended_diffusion_and_msagan_run_at_full_size(fixture_root, tmp_path, monkeypatch):
    """Blended Diffusion on guided-diffusion's full-size 256 px UNet (553 M parameters) and CLIP ViT-B/16, random,
    saved as their public files and loaded through `build_methods`; MSaGAN trained by the gan stage at the paper
    profile's size (128 px, 32 channels, batch 16) for 2 steps on 36 fixture photos; one edit each of a 512 px
    fixture photo. Prints their times and the process's peak memory."""
    import resource

    import pandas as pd

    from facepaint.common.images import load_rgb, resize_rgb
    from facepaint.data.masks import annotation_union
    from facepaint.evaluation.methods.base import EditInput
    from facepaint.evaluation.methods.guided_unet import UNCOND_256, save_random_guided_checkpoint
    from facepaint.evaluation.methods.open_clip_model import save_random_open_clip, vit_b16_config
    from facepaint.evaluation.methods.registry import build_methods
    from facepaint.evaluation.msagan import GanConfig
    from facepaint.method.adapter import FaceAdapter
    from facepaint.method.artifact import freeze_all_but_kv, save_artifact
    from facepaint.method.blend import soft_mask
    from facepaint.method.masks import face_mask
    from facepaint.method.models import tiny_components
    from stages import gan
    from tests.helpers import tiny_conditions

    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml", profile="paper")
    t = time.perf_counter()
    save_random_guided_checkpoint(tmp_path / "256x256_diffusion_uncond.pt", UNCOND_256, 0)
    save_random_open_clip(tmp_path / "clip", vit_b16_config(), 0)
    saved_s = time.perf_counter() - t

    ids = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())[:36]
    split_file = tmp_path / "split.parquet"
    pd.DataFrame({"id": ids, "split": ["train"] * 32 + ["test"] * 4, "present": True}).to_parquet(split_file)
    gan_cfg = section(params, "gan", GanConfig, max_steps=2, device="cpu")
    assert (gan_cfg.image_size, gan_cfg.channels, gan_cfg.batch_size) == (128, 32, 16)
    t = time.perf_counter()
    trained = gan.run(fixture_root, gan_cfg, split=split_file, out=tmp_path / "gan", checkpoints=tmp_path / "ck",
                      progress=False)  # fmt: skip
    gan_s = time.perf_counter() - t
    assert trained["steps"] == 2 and trained["train_images"] == 32

    comps = tiny_components(seed=0, parts=("unet", "text_encoder"))  # only the artifact's conditions are read
    freeze_all_but_kv(comps.unet)
    artifact = save_artifact(
        tmp_path / "model", comps.unet, FaceAdapter(comps.text_encoder.config.hidden_size), tiny_conditions(512)
    )
    cfg = section(params, "evaluate", EvalConfig, dtype="fp32")
    baselines = replace(cfg.baselines, guided_diffusion=str(tmp_path / "256x256_diffusion_uncond.pt"),
                        clip_vit_b16=str(tmp_path / "clip"), msagan=str(tmp_path / "gan" / "model"))  # fmt: skip
    bd = replace(cfg.blended_diffusion, skip_timesteps=98, batch_size=1, iterations_num=1)  # 2 of its steps
    assert bd.model == "uncond_256"
    names = ["blended_diffusion", "msagan"]
    t = time.perf_counter()
    methods, unavailable = build_methods(
        names, artifact.path, section(params, "sampling", SamplingOptions), device="cpu", dtype="fp32",
        baselines=baselines, brushnet=cfg.brushnet, diptych=cfg.diptych, blended_latent=cfg.blended_latent,
        blended_diffusion=bd,
    )  # fmt: skip
    load_s = time.perf_counter() - t
    assert list(methods) == names and unavailable == {}
    assert sum(p.numel() for p in methods["blended_diffusion"].unet.parameters()) == 552_814_086

    i = ids[-1]
    image = resize_rgb(load_rgb(image_path(fixture_root, i)).image, 512)
    fm = face_mask(annotation_union(fixture_root, i, section(params, "masks", MaskConfig).parts)[0], 512, 8)
    soft = soft_mask(fm.mask, sigma_pixels(section(params, "sampling", SamplingOptions).sigma, 512))
    x = EditInput(image, fm.mask, soft, fm.beta, "a photo of a smiling woman", 0)
    figures = {"save_s": round(saved_s, 1), "gan_2_steps_s": round(gan_s, 1), "load_s": round(load_s, 1)}
    for name, m in methods.items():
        assert m.applies(x), name
        t = time.perf_counter()
        out = m.edit(x)
        figures[f"{name}_edit_s"] = round(time.perf_counter() - t, 1)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8, name
        assert np.array_equal(out[soft == 0], image[soft == 0]), name
        assert (out[fm.mask] != image[fm.mask]).any(), name
    figures["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)
    print(json.dumps(figures))
