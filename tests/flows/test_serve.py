"""Serving the flows (flows/serve.py): both deployments on params.yaml's schedules, one run at a time each; and
the flow modules' imports, which serve.py alone joins (no cycle)."""

import ast
from pathlib import Path

from flows import serve as sv

REPO = Path(__file__).resolve().parents[2]


def test_the_deployments_run_one_at_a_time_on_the_params_schedules():
    retrain, watch = sv.deployments(REPO)
    cfg = sv.schedule(REPO)
    assert (cfg.cron, cfg.watch_cron) == ("0 3 * * 0", "0 * * * *")  # params.yaml `retrain`
    for dep, flow, name, cron in ((retrain, "facepaint-retrain", "scheduled", cfg.cron),
                                  (watch, "facepaint-watch", "new-data", cfg.watch_cron)):  # fmt: skip
        assert (dep.flow_name, dep.name) == (flow, name)
        assert dep.schedules and dep.schedules[0].schedule.cron == cron
        assert dep.concurrency_limit == 1 and dep.concurrency_options.collision_strategy == "CANCEL_NEW"
        assert dep.parameters == {"project": str(REPO.resolve())}


def test_serve_serves_both_deployments(monkeypatch, capsys):
    import prefect

    served = []
    monkeypatch.setattr(prefect, "serve", lambda *deployments: served.append(deployments))
    monkeypatch.chdir(REPO)
    assert sv.main([]) == 0
    assert [[(d.flow_name, d.name) for d in deps] for deps in served] == [
        [("facepaint-retrain", "scheduled"), ("facepaint-watch", "new-data")]
    ]
    assert sv.main(["now"]) == 2 and "usage: python -m flows.serve" in capsys.readouterr().err
    assert len(served) == 1


def flow_imports(module: str) -> set[str]:
    """The flows modules that flows/<module>.py imports anywhere (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse((REPO / "flows" / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n for n in names if n.startswith("flows.")}


def test_only_serve_imports_both_flows():
    """retrain <- watch <- serve: the retrain flow imports no other flow (it used to import watch inside `serve`,
    a cycle), the watch flow imports the retrain flow it calls, and only serve.py imports both."""
    assert flow_imports("retrain") == set()
    assert flow_imports("watch") == {"flows.retrain"}
    assert flow_imports("serve") == {"flows.retrain", "flows.watch"}
