"""Serve the retrain and watch flows on the cron schedules of params.yaml `retrain`.

    prefect server start                       # in another terminal (UI at http://127.0.0.1:4200)
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.serve                      # until interrupted

Two deployments: `facepaint-retrain/scheduled` runs the retrain flow (flows/retrain.py) on `retrain.cron`;
`facepaint-watch/new-data` runs the watch flow (flows/watch.py) on `retrain.watch_cron`, which retrains only
when the data changed. Each has a concurrency limit of 1 that cancels a colliding run instead of queueing it
(and every retrain holds the project's lock, see flows/retrain.py, so a run started by hand cannot overlap a
scheduled one either).

This module imports both flows; neither imports it (the watch flow calls the retrain flow).
"""

from __future__ import annotations

import sys
from pathlib import Path

from flows.retrain import retrain, schedule
from flows.watch import watch


def deployments(project: Path = Path(".")) -> list:
    """The two deployments of `project` (its params.yaml `retrain` schedules), one run at a time each."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    cfg = schedule(project)
    once = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    parameters = {"project": str(project.resolve())}
    return [
        retrain.to_deployment("scheduled", cron=cfg.cron, concurrency_limit=once, parameters=parameters),
        watch.to_deployment("new-data", cron=cfg.watch_cron, concurrency_limit=once, parameters=parameters),
    ]


def serve(project: Path = Path(".")) -> None:
    """Serve both deployments of `project` until interrupted (needs a Prefect server: PREFECT_API_URL)."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(project))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(f"usage: python -m flows.serve (no arguments; got {args})", file=sys.stderr)
        return 2
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
