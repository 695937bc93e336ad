"""Which model an app serves: an artifact directory, or a registered release (`models:/facepaint@champion`,
`runs:/...`) resolved through the MLflow registry.

The registry lives in the orchestration layer (`tracking.registry`, every MLflow call of the project). This is
the one module of the package that reaches it, lazily and only for such URIs: without MLflow every other
path works, and a registry URI says what is missing (tests/test_layers.py runs it so).
"""

from __future__ import annotations

import re

DEFAULT_MODEL = "data/model"  # where the train stage writes its artifact (stages.common.MODEL)
# a release as `releases` labels it: its URI, then "(version N...)" (label)
LABELLED = re.compile(r"(models:/.+@[\w-]+) \(version \d+[^()]*\)")


def resolve(model) -> str:
    """An artifact directory, or a registered release (`models:/facepaint@champion`, `runs:/...`) resolved
    to the artifact directory inside it through the MLflow registry (the orchestration layer's
    `tracking` package: the one place this method package reaches it, lazily, and only for such URIs). A release
    as `releases` labels it ("models:/facepaint@champion (version 1; also challenger)") is its URI."""
    model = release_uri(model)
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


def release_uri(choice) -> str:
    """The model URI of a release's label (`label`); anything else as it is."""
    found = LABELLED.fullmatch(str(choice))
    return found.group(1) if found else str(choice)


def release_uris(choice) -> set[str]:
    """Every model URI a release's label names (its URI and one per other alias: "models:/facepaint@champion
    (version 1; also challenger)" names models:/facepaint@champion and models:/facepaint@challenger); anything
    else, itself."""
    uri = release_uri(choice)
    found = re.search(r"; also ([\w, -]+)\)$", str(choice)) if uri != str(choice) else None
    if not found:
        return {uri}
    base = uri.rsplit("@", 1)[0]
    return {uri} | {f"{base}@{alias.strip()}" for alias in found.group(1).split(",")}


def label(release) -> str:
    """How a release (tracking.registry.Release: a registered version and its aliases) is offered: its URI by
    its first alias, then which version it is and its other aliases, e.g.
    "models:/facepaint@champion (version 3, the latest, artifact 842615176c7c; also challenger)". `resolve`
    (and `release_uri`) read it back as its URI."""
    about = [f"version {release.version}"]
    if release.latest:
        about.append("the latest")
    if release.artifact:
        about.append(f"artifact {release.artifact}")
    others = f"; also {', '.join(release.aliases[1:])}" if len(release.aliases) > 1 else ""
    return f"{release.uri} ({', '.join(about)}{others})"


def releases(timeout_s: float = 10.0) -> tuple[list[str], str]:
    """(the registered releases, each once however many aliases name it: `label`s such as
    "models:/facepaint@champion (version 1, the latest; also challenger)", which `resolve` takes; a sentence on
    where they come from or why there are none), from the MLflow registry through the `tracking` package,
    lazily; a store that does not answer within `timeout_s` gives none (the caller is not held up by a distant
    server's retries)."""
    try:
        from tracking.registry import releases as registered
        from tracking.registry import tracking_uri
    except ImportError as e:
        return [], f"no registered releases: MLflow cannot be imported ({e})"
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        found = pool.submit(registered).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return [], f"no registered releases: the tracking store {tracking_uri()} did not answer in {timeout_s:g} s"
    except Exception as e:  # an unreachable or broken store
        return [], f"no registered releases: the tracking store {tracking_uri()} failed ({type(e).__name__}: {e})"
    finally:
        pool.shutdown(wait=False)
    if not found:
        return [], f"no registered releases in the tracking store {tracking_uri()}"
    return [label(r) for r in found], f"{len(found)} registered release(s) from the tracking store {tracking_uri()}"
