import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from facepaint.common.io import atomic_dir, atomic_path, read_parquet, read_parquet_metadata, write_json, write_parquet


def test_parquet_roundtrip_with_metadata(tmp_path):
    df = pd.DataFrame({"id": [1, 2], "mask": [b"\x00", b"\x01\x02"], "tags": [["a"], ["b", "c"]]})
    write_parquet(df, tmp_path / "t.parquet", metadata={"sigma": 4.0, "parts": ["skin"]})
    back = read_parquet(tmp_path / "t.parquet")
    assert back["id"].tolist() == [1, 2] and back["mask"].tolist() == [b"\x00", b"\x01\x02"]
    assert [list(t) for t in back["tags"]] == [["a"], ["b", "c"]]
    assert read_parquet_metadata(tmp_path / "t.parquet") == {"sigma": 4.0, "parts": ["skin"]}


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()


def test_atomic_dir_swaps_only_on_success(tmp_path):
    out = tmp_path / "shards"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError
    assert sorted(os.listdir(out)) == ["a"]
    with atomic_dir(out) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(os.listdir(out)) == ["c"]
    assert sorted(os.listdir(tmp_path)) == ["shards"]


def test_sigkill_mid_write_leaves_no_parquet(tmp_path):
    """A process killed (SIGKILL) while writing leaves no file at the final path, and the next
    write removes its temporary."""
    target = tmp_path / "masks.parquet"
    code = f"""
import os, signal
import pandas as pd, pyarrow.parquet as pq
from facepaint.common import io
real = pq.write_table
def dying(table, where, **kw):
    with open(where, "wb") as f:
        f.write(b"PAR1 partial")
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
pq.write_table = dying
io.write_parquet(pd.DataFrame({{"id": range(1000)}}), {str(target)!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    leftovers = [p for p in os.listdir(tmp_path)]
    assert leftovers and all(p.endswith(".tmp") for p in leftovers)
    write_parquet(pd.DataFrame({"id": [1]}), target)
    assert os.listdir(tmp_path) == ["masks.parquet"]


def test_read_parquet_missing_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        read_parquet(tmp_path / "nope.parquet")
