"""Per-stage report of what was missing, unusable or converted, with the gate on unusable inputs.

Three kinds of trouble, kept apart because users act on them differently:
- missing: listed in the attribute file but absent from this copy (a partial download). Never fatal.
- unusable: present but cannot be used (corrupt, too small, no face pixels...). The stage goes on
  while their fraction of the present items is at most `max_unusable_fraction`, else it fails.
- warnings: used, but something was done to it (CMYK converted, a part mask absent...).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facepaint.common.errors import FacepaintError
from facepaint.common.io import write_json


class DatasetError(FacepaintError):
    """A problem with the dataset as a whole; the message names the file and what to do."""


@dataclass
class Problem:
    """One id (or one line) that could not be used, and why."""

    id: int | None
    reason: str
    line: int | None = None

    def as_dict(self) -> dict:
        d = {"id": self.id, "reason": self.reason}
        if self.line is not None:
            d["line"] = self.line
        return d


@dataclass
class StageReport:
    stage: str
    total: int = 0  # items the stage tried to use
    counted: str = "present"  # what `total` counts: present images, or "listed" attribute rows (split)
    missing: list[int] = field(default_factory=list)
    unusable: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_unusable(self, image_id, reason: str, line: int | None = None) -> None:
        self.unusable.append(Problem(image_id, reason, line))

    def add_warning(self, image_id, reason: str) -> None:
        self.warnings.append(Problem(image_id, reason))

    @property
    def unusable_fraction(self) -> float:
        return len(self.unusable) / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "stage": self.stage,
            "counts": {
                self.counted: self.total,
                "usable": self.total - len(self.unusable),
                "unusable": len(self.unusable),
                "missing": len(self.missing),
                "warnings": len(self.warnings),
            },
            "unusable_reasons": dict(Counter(_kind(p.reason) for p in self.unusable).most_common()),
            "notes": self.notes,
            "unusable": [p.as_dict() for p in self.unusable],
            "warnings": [p.as_dict() for p in self.warnings],
            "missing": sorted(int(i) for i in self.missing),
        }

    def write(self, path: str | os.PathLike) -> None:
        write_json(self.as_dict(), path)

    def summary(self) -> str:
        return (
            f"{self.stage}: {self.total - len(self.unusable)} usable of {self.total} {self.counted}, "
            f"{len(self.unusable)} unusable, {len(self.missing)} missing, {len(self.warnings)} warnings"
        )

    def check(
        self, max_fraction: float, param: str = "max_unusable_fraction", report_path: str | os.PathLike | None = None
    ) -> None:
        """Raise DatasetError when the unusable fraction is over `max_fraction` (params `<stage>.<param>`)."""
        if self.total and self.unusable_fraction > max_fraction:
            where = f" (every one is listed in {Path(report_path)})" if report_path else ""
            examples = "; ".join(f"{p.id}: {p.reason}" for p in self.unusable[:3])
            raise DatasetError(
                f"{self.stage}: {len(self.unusable)} of {self.total} items are unusable "
                f"({self.unusable_fraction:.1%} > {self.stage}.{param} = {max_fraction:.1%}){where}. "
                f"First: {examples}. Fix or remove those files, or raise {self.stage}.{param} in params.yaml."
            )


def _kind(reason: str) -> str:
    """The reason up to its first colon: groups 'corrupt or unreadable image: ...' together."""
    return reason.split(":", 1)[0]
