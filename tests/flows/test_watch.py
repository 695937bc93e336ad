"""The watch flow (flows/watch.py): which `dvc status` changes are new data, and a retrain only for those (the
demo pipeline for real: tests/flows/test_retrain.py)."""

from flows import watch as wt


def test_watch_reads_data_changes_from_dvc_status():
    status = {
        "split": [{"changed deps": {"data/demo/CelebA-HQ-img": "modified", "stages/split.py": "modified"}}],
        "train": [{"changed deps": {"data/latents": "modified"}}],
        "masks": [{"changed outs": {"data/masks.parquet": "deleted"}}],
    }
    assert wt.data_changes(status) == {"split": {"data/demo/CelebA-HQ-img": "modified"}}
    assert wt.data_changes({}) == {}


def test_the_watch_retrains_only_when_the_data_changed(harness, monkeypatch, tmp_path):
    retrained = []
    monkeypatch.setattr(wt, "retrain", lambda project: retrained.append(project) or {"stub": True})
    monkeypatch.setattr(wt, "changed_stages", lambda project: {"train": [{"changed deps": {"train.py": "modified"}}]})
    assert wt.watch(str(tmp_path)) == {"retrained": False, "changes": {}} and retrained == []  # code, not data
    new_data = {"latents": [{"changed deps": {"data/demo/CelebA-HQ-img": "modified"}}]}
    monkeypatch.setattr(wt, "changed_stages", lambda project: new_data)
    out = wt.watch(str(tmp_path))
    assert out["retrained"] and out["result"] == {"stub": True}
    assert out["changes"] == {"latents": {"data/demo/CelebA-HQ-img": "modified"}}
    assert retrained == [str(tmp_path)]
