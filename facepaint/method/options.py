"""How an edit samples and blends: `SamplingOptions`, the one type every caller shares.

The editor (`FaceEditor.edit`), the evaluation's methods, `facepaint edit`, the web app and the MLflow pyfunc
model all run an edit with a `SamplingOptions`; users' values reach it through one parser,
`SamplingOptions.parse` (`common.checks.parse_fields`: text, form numbers and JSON converted and checked,
errors naming the option). Its defaults are the product's (the `facepaint edit` defaults): the SPEC states no
inference settings, and 50 DDIM steps at guidance 7.5 is SD1.5's usual. The evaluation's values live in
params.yaml, section `sampling` (the demo samples 10 steps; profiles/paper.yaml 50).

The per-call choices that are not about sampling stay arguments of the call: the seed (like the prompt), and
for the editor which faces, blending on or off and the watermark (facepaint.editing.editor.EditChoices).
"""

from __future__ import annotations

from dataclasses import dataclass

from facepaint.common.checks import check_fields, check_number, parse_fields
from facepaint.common.limits import MAX_STEPS, check_prompt

SCHEDULERS = ("ddim", "dpm")
# denoising steps of one edit: facepaint.common.limits (200; SD1.5's schedule has 1000 timesteps, the paper samples 50)
MAX_GUIDANCE = 100.0  # SD1.5 is used at 1-20; far above that the guided noise prediction only saturates
# px of a 512 px crop: G_sigma's kernel spans 6 sigma, so beyond this the soft mask is a blur of the whole crop
# (and gaussian_filter's cost grows with sigma)
MAX_SIGMA = 100.0


@dataclass(frozen=True)
class SamplingOptions:  # params.yaml `sampling` (the evaluation's); these defaults are the product's
    steps: int = 50  # denoising steps (of which `strength` are run)
    guidance_scale: float = 7.5  # classifier-free guidance
    scheduler: str = "ddim"  # ddim | dpm (DPM-Solver++ multistep)
    strength: float = 1.0  # how far the face is noised (1: entirely regenerated)
    negative_prompt: str = ""  # also conditioned by the face-aware adapter, as the prompt is
    sigma: float = 4.0  # std of M_soft = G_sigma * M in pixels of a 512 px face crop (facepaint.method.blend)

    def __post_init__(self):
        check_fields(self, "")  # named as the user gives them; params.yaml's errors add the section
        check_steps(self.steps, self.strength)
        check_number("guidance_scale", self.guidance_scale, 0, MAX_GUIDANCE)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        check_number("sigma", self.sigma, 0, MAX_SIGMA)
        check_prompt(self.negative_prompt, "negative_prompt")

    @classmethod
    def parse(cls, raw, base: SamplingOptions | None = None) -> SamplingOptions:
        """Options from a user's values (`raw`: field -> text, number or bool), the others `base`'s (default:
        the product's defaults); ValueError naming the option that cannot be used."""
        return parse_fields(cls, raw, base)


def check_steps(steps: int, strength: float) -> None:
    """ValueError unless `steps` is a whole number up to MAX_STEPS, `strength` a number in (0, 1] and at least
    one denoising step runs (`strength` of `steps` are run)."""
    check_number("strength", strength)
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    check_number("steps", steps, 1, MAX_STEPS, whole=True)  # not NaN, 2.5, text, 0 or 5000
    if steps * strength < 1:
        raise ValueError(f"steps x strength must be at least 1 (one denoising step), got {steps} x {strength}")
