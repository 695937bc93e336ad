import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest

from facepaint.common.report import DatasetError
from facepaint.data.celebamask import ATTRIBUTE_FILE
from facepaint.data.split import SplitConfig, n_train, split_ids
from stages import split as split_stage
from tests.helpers import config

# The seed-42 split of ids 0..29999, pinned: if this changes, every published experiment's split
# changed with it.
TRAIN_DIGEST_SEED42 = "fe67f0f5db65ff04b2ccb7250bba99b0476093fbc2754b6528d16380260f2a9e"


def digest(s: pd.Series) -> str:
    train = s[s == "train"].index.tolist()
    return hashlib.sha256(",".join(map(str, train)).encode()).hexdigest()


def test_full_dataset_is_exactly_20000_10000_and_stable():
    s = split_ids(range(30000), config("split", SplitConfig, seed=42))
    assert (s == "train").sum() == 20000 and (s == "test").sum() == 10000
    assert s.index.tolist() == list(range(30000))
    again = split_ids(list(reversed(range(30000))), config("split", SplitConfig, seed=42))
    assert again.equals(s)
    assert digest(s) == TRAIN_DIGEST_SEED42


def test_same_split_in_another_process():
    code = (
        "from facepaint.data.split import split_ids, SplitConfig; import hashlib;"
        "cfg = SplitConfig(seed=42, train_parts=2, test_parts=1, max_malformed_fraction=0.01);"
        "s = split_ids(range(30000), cfg); t = s[s == 'train'].index.tolist();"
        "print(hashlib.sha256(','.join(map(str, t)).encode()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == TRAIN_DIGEST_SEED42


def test_seed_changes_the_split_and_proportions_hold():
    a, b = (
        split_ids(range(300), config("split", SplitConfig, seed=42)),
        split_ids(range(300), config("split", SplitConfig, seed=7)),
    )
    assert (a == "train").sum() == (b == "train").sum() == 200
    assert not a.equals(b)
    assert n_train(60, config("split", SplitConfig)) == 40 and n_train(7, config("split", SplitConfig)) == 5
    assert n_train(10, config("split", SplitConfig, train_parts=4, test_parts=1)) == 8
    with pytest.raises(ValueError):
        SplitConfig(seed=42, train_parts=0, test_parts=1, max_malformed_fraction=0.01)


def test_split_is_not_id_order():
    s = split_ids(range(3000), config("split", SplitConfig))
    first_third = s.iloc[:1000]
    assert 550 < (first_third == "train").sum() < 780  # random, not "lowest ids are train"


def test_stage_reports_malformed_rows_and_fails_over_the_threshold(demo_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attr = demo_copy / ATTRIBUTE_FILE
    lines = attr.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # drop one value from the row of id 1
    attr.write_text("\n".join(lines) + "\n")
    df = split_stage.run(
        demo_copy, config("split", SplitConfig, max_malformed_fraction=0.2), out=tmp_path / "split.parquet"
    )
    report = json.loads((tmp_path / "data/reports/split.json").read_text())
    assert report["unusable"] == [{"id": 1, "reason": "expected 40 attribute values, found 39", "line": 4}]
    assert 1 not in df["id"].tolist() and len(df) == 11 and df["present"].all()
    with pytest.raises(DatasetError, match="max_malformed_fraction"):
        split_stage.run(
            demo_copy, config("split", SplitConfig, max_malformed_fraction=0.05), out=tmp_path / "split2.parquet"
        )
    assert not (tmp_path / "split2.parquet").exists()


def test_stage_on_real_fixture_reports_missing_and_goes_on(fixture_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = split_stage.run(fixture_root, config("split", SplitConfig), out=tmp_path / "split.parquet")
    assert len(df) == 30000 and (df.split == "train").sum() == 20000
    assert df["present"].sum() == 200
    report = json.loads((tmp_path / "data/reports/split.json").read_text())
    assert report["counts"]["missing"] == 29800 and len(report["missing"]) == 29800
    assert report["counts"]["unusable"] == 0 and report["counts"]["listed"] == 30000
    present = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    assert not set(present) & set(report["missing"])
