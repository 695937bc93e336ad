"""The `facepaint` command line.

    facepaint edit PHOTO --prompt "a smiling woman with blond hair" --out OUT.png
    facepaint edit PHOTOS/ --prompt "..." --out EDITED/ [--mask MASKS/] [--batch-size 8]

PHOTO may be a folder: every .jpg/.jpeg/.png/.webp in it is edited into OUT/<stem>.png, with a progress
bar; a photo that fails is reported and the rest go on (exit status 1 if any failed). `--mask` is a
face mask image (white = face) or, for a folder, a folder of masks named like the photos; without it
BiSeNet finds the face. Expected problems (a missing artifact or weights, an unreadable photo, no face)
print one `error:` line, without a traceback. Run `facepaint edit -h` for every option.

`--batch-size N` edits a folder's photos N per pipeline call (`FaceEditor.edit_batch`: faster on a GPU;
each result equals the one-at-a-time edit up to float rounding, at most a few 1/255 steps).

Speed options (`--attention`, `--channels-last`, `--compile`, `--dtype`) are `facepaint.speed.Speed`'s;
the defaults are the fast settings, and each output's provenance records them under "runtime".
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from facepaint.artifact import ArtifactError
from facepaint.edit import DEFAULTS, PADDING, EditError, EditOptions, FaceEditor
from facepaint.generate import SCHEDULERS
from facepaint.images import ImageError
from facepaint.models import ModelLoadError
from facepaint.speed import ATTENTION, COMPILE_MODES, DTYPES, Speed

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DEFAULT_MODEL = "data/model"  # where the train stage writes its artifact (stages.common.MODEL)
SPEED = Speed()  # the speed options' defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facepaint", description="Text-driven face editing.")
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser(
        "edit",
        help="edit the face in a photo (or every photo in a folder) to match a prompt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("photo", type=Path, help="a photo, or a folder of photos")
    e.add_argument("--prompt", required=True, help="what the face should look like")
    e.add_argument("--out", required=True, type=Path, help="output .png (a folder when PHOTO is a folder)")
    e.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a trained artifact directory (default: {DEFAULT_MODEL}, the pipeline's latest)",
    )
    e.add_argument("--mask", type=Path, help="face mask image, white = face (a folder of <stem>.png for a folder)")
    e.add_argument(
        "--no-blend",
        dest="blend",
        action="store_false",
        help="paste the decoded crop as it is (the ablation of pixel-level blending)",
    )
    e.add_argument("--steps", type=int, default=DEFAULTS.steps, help=f"denoising steps (default {DEFAULTS.steps})")
    e.add_argument(
        "--guidance-scale",
        type=float,
        default=DEFAULTS.guidance_scale,
        help=f"classifier-free guidance (default {DEFAULTS.guidance_scale})",
    )
    e.add_argument("--seed", type=int, default=DEFAULTS.seed)
    e.add_argument(
        "--strength",
        type=float,
        default=DEFAULTS.strength,
        help=f"how far to noise the face, 0..1 (default {DEFAULTS.strength})",
    )
    e.add_argument("--negative-prompt", default=DEFAULTS.negative_prompt)
    e.add_argument("--scheduler", choices=SCHEDULERS, default="ddim")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    e.add_argument("--dtype", choices=DTYPES, default=SPEED.dtype, help="on a GPU; the CPU uses fp32")
    e.add_argument(
        "--attention",
        choices=ATTENTION,
        default=SPEED.attention,
        help="sdpa: torch's scaled_dot_product_attention (default); classic: explicit softmax(QK^T)V",
    )
    e.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="NHWC UNet and VAE weights (auto: on with CUDA, off on the CPU)",
    )
    e.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default="off",
        choices=COMPILE_MODES,
        metavar="MODE",
        help="torch.compile the UNet; MODE one of " + ", ".join(COMPILE_MODES) + " (--compile alone: "
        "default). The first batch compiles (tens of seconds); worth it for a folder on a GPU",
    )
    e.add_argument("--batch-size", type=int, default=1, help="photos of a folder edited per pipeline call (default 1)")
    e.add_argument("--bisenet-weights", type=Path, help="parsing_bisenet.pth (default: facexlib's cache/download)")
    e.add_argument("--watermark", action="store_true", help="add an invisible mark to the edited face only")
    e.add_argument(
        "--padding", type=float, default=PADDING, help=f"crop margin per side, x the face size (default {PADDING})"
    )
    e.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="soft-mask Gaussian std in pixels at the model's resolution (default: the one the model "
        "was trained with, from its artifact)",
    )
    e.set_defaults(func=edit_command)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _show_warning
        return args.func(args)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _error(message) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _jobs(args) -> list[tuple[Path, Path | None, Path]]:
    """(photo, mask or None, output) for every photo to edit; ValueError for an unusable command line."""
    if args.photo.is_dir():
        photos = sorted(p for p in args.photo.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not photos:
            raise ValueError(f"{args.photo} holds no {'/'.join(PHOTO_SUFFIXES)} photos")
        stems = [p.stem for p in photos]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:
            raise ValueError(
                f"photos in {args.photo} share the stem(s) {clash} and would write the same "
                f"{args.out}/<stem>.png; rename them"
            )
        return [(p, _mask_for(p, args.mask), args.out / f"{p.stem}.png") for p in photos]
    if not args.photo.exists():
        raise ValueError(f"photo {args.photo} not found")
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} must be a .png file (the provenance rides in PNG text chunks)")
    if args.mask is not None and args.mask.is_dir():
        raise ValueError(f"--mask {args.mask} is a folder; for a single photo give a mask file")
    return [(args.photo, args.mask, args.out)]


def _mask_for(photo: Path, mask: Path | None) -> Path | None:
    """A folder's mask for `photo`: MASKS/<stem>.png (or any photo suffix); a file is used for every photo."""
    if mask is None or not mask.is_dir():
        return mask
    found = [mask / f"{photo.stem}{s}" for s in PHOTO_SUFFIXES if (mask / f"{photo.stem}{s}").is_file()]
    return found[0] if found else mask / f"{photo.stem}.png"  # a missing file fails that photo, with its name


def resolve(model) -> str:
    """An artifact directory, or a registered release (`models:/facepaint@champion`, `runs:/...`) resolved
    to the artifact directory inside it through the MLflow registry (the orchestration layer's
    `tracking` package: the one place this method package reaches it, lazily, and only for such URIs)."""
    if not str(model).startswith(("models:/", "runs:/")):
        return str(model)
    try:
        from tracking.registry import resolve_model

        return resolve_model(str(model))
    except ImportError as e:
        raise ValueError(
            f"--model {model} is an MLflow model URI, but MLflow cannot be imported ({e}); "
            f"install the project with its dependencies, or pass an artifact directory"
        ) from e
    except Exception as e:  # MlflowException (no such model or alias), an unreachable store, no artifact inside
        raise ValueError(f"--model {model}: {type(e).__name__}: {e}") from e


def edit_command(args) -> int:
    try:
        options = EditOptions(
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            strength=args.strength,
            negative_prompt=args.negative_prompt,
            seed=args.seed,
            blend=args.blend,
            watermark=args.watermark,
        )
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        jobs = _jobs(args)
        speed = Speed(
            dtype=args.dtype,
            attention=args.attention,
            channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
            compile=args.compile,
        )
        editor = FaceEditor.from_artifact(
            resolve(args.model),
            device=args.device,
            scheduler=args.scheduler,
            speed_options=speed,
            bisenet_weights=args.bisenet_weights,
            padding=args.padding,
            sigma=args.sigma,
        )
        if args.mask is None:
            editor.face_parser()  # missing weights: one error up front, not one per photo
    except (ValueError, ArtifactError, ModelLoadError) as e:
        return _error(e)

    failed = 0
    with tqdm(total=len(jobs), desc="edit", unit="photo", disable=len(jobs) < 2) as bar:
        for start in range(0, len(jobs), args.batch_size):
            ready = []  # (prepared photo, output) of this batch; a photo that cannot be edited is reported
            for photo, mask, out in jobs[start : start + args.batch_size]:
                try:
                    ready.append((editor.prepare(photo, mask), out))
                except (ImageError, EditError) as e:
                    failed += 1
                    bar.update()
                    tqdm.write(f"error: {e}" if str(photo) in str(e) else f"error: {photo}: {e}", file=sys.stderr)
            if not ready:
                continue
            results = editor.edit_batch([p for p, _ in ready], args.prompt, **asdict(options))
            for (prepared, out), result in zip(ready, results):
                result.save(out)
                bar.update()
                for note in result.notes:
                    tqdm.write(f"note: {prepared.name}: {note}", file=sys.stderr)
    if len(jobs) > 1:
        print(
            f"edited {len(jobs) - failed} of {len(jobs)} photos into {args.out}"
            + (f"; {failed} failed (listed above)" if failed else ""),
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
