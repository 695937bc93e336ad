"""Atomic file output: nothing half-written is ever left at a final path.

Every writer here writes to a temporary sibling and renames it into place (rename is atomic on one
filesystem), so a killed stage leaves either the old file or the new one, never a partial one. The
temporary is flushed to disk (fsync) before the rename, so a power cut cannot leave an empty file at the
final path either, and a write error that the disk reports only at that flush still keeps the old file.
A directory is swapped in with two renames (old aside, new in); a run killed between them leaves the
old one aside, and the next write of that path puts it back before anything else.

A full disk (ENOSPC, or a quota: EDQUOT) is a `DiskFullError` naming the final path: nothing reached it,
its previous version is unchanged and the temporary is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from facepaint.common.errors import FacepaintError

METADATA_KEY = b"facepaint"
log = logging.getLogger("facepaint.io")


class DiskFullError(FacepaintError):
    """A write failed because the disk (or the user's quota) is full; the message names the path."""


FULL = (errno.ENOSPC, errno.EDQUOT)
# how libraries that do not raise an OSError say it: safetensors' Rust errors ("... (os error 28)")
FULL_TEXT = ("no space left on device", "disk quota exceeded", "(os error 28)", "(os error 122)")


def _disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from or during, is a full disk."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FULL or any(t in str(e).lower() for t in FULL_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def _full(path: Path, e: BaseException) -> DiskFullError:
    return DiskFullError(
        f"cannot write {path}: the disk is full ({type(e).__name__}: {e}). Nothing was written there: its previous "
        f"version, if any, is unchanged and no temporary file is left. Free space on the disk that holds "
        f"{path.parent.resolve()} and run again"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except Exception as e:
        if _disk_full(e) and not isinstance(e, DiskFullError):
            raise _full(path, e) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; swap it in for `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for f in sorted(tmp.rglob("*")):
            _fsync(f)
        _fsync(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)  # a kill between these two renames leaves `old` aside: _remove_stale puts it back
        _fsync(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except Exception as e:
        if _disk_full(e):  # named by this directory, also when a file inside it said so (atomic_path's error)
            cause = e.__cause__ if isinstance(e, DiskFullError) else e
            raise _full(path, cause) from cause
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    """Flush a written file (or a directory's entries) to the disk."""
    if not (path.is_file() or path.is_dir()):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale(path: Path) -> None:
    """Remove temporaries a killed earlier run left beside `path` (they never reached `path` itself). A previous
    version that a run killed inside atomic_dir's swap had set aside is put back first."""
    aside = sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime)
    if aside and not path.exists():
        os.replace(aside[-1], path)
        log.warning("%s: put back its previous version, which a killed run had set aside", path)
    stale_paths = [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.old")]
    for stale in stale_paths:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write a DataFrame to Parquet atomically; `metadata` (JSON-able) rides in the schema."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = json.dumps(metadata, default=_jsonable).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | os.PathLike, columns=None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it first (`dvc repro`)")
    return pd.read_parquet(path, columns=columns)


def read_parquet_metadata(path: str | os.PathLike) -> dict:
    """The facepaint metadata (parameters that produced the file) of a Parquet file."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (hex)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
