"""profiles/flags.py turns a params profile into `dvc exp run -S` flags; a key that is not in
params.yaml must be an error, not a silently ignored override."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "profiles"))
import flags  # noqa: E402


def test_paper_profile_keys_exist_and_become_flags():
    out = flags.flags("paper")
    profile = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())
    assert len(out) == len(profile)
    assert "-S masks.resolution=512" in out and "-S model.source=pretrained" in out


def test_unknown_key_is_refused(tmp_path, monkeypatch):
    (tmp_path / "typo.yaml").write_text("masks.sigmaa: 3\n")
    monkeypatch.setattr(flags, "HERE", tmp_path)
    with pytest.raises(SystemExit, match="masks.sigmaa is not a key of params.yaml"):
        flags.flags("typo", params_path=REPO / "params.yaml")


def test_command_line_prints_one_line():
    out = subprocess.run(
        [sys.executable, str(REPO / "profiles" / "flags.py"), "paper"], capture_output=True, text=True, check=True
    ).stdout
    assert out.count("\n") == 1 and out.startswith("-S ")


def test_profiles_combine_and_every_flag_is_one_shell_word():
    out = flags.flags("paper", "ablation")
    assert '-S ablation.variants=["masked","uniform"]' in out and "-S masks.backend=bisenet" in out
    assert all(len(f.split()) == 2 for f in out)  # "-S" and one word: survives $(...) word splitting
