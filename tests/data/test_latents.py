import json

import numpy as np
import pandas as pd
import pytest
import torch

from facepaint.common.images import decode_png
from facepaint.data import latents as lat
from facepaint.data.latents import LatentConfig, compute_latents, encode_batch, iter_shards, read_index, write_index
from facepaint.data.masks import MaskConfig, compute_masks
from facepaint.method.models import tiny_components
from tests.helpers import config


@pytest.fixture(scope="module")
def vae():
    return tiny_components(seed=0, parts=("vae",)).vae


@pytest.fixture(scope="module")
def mask_table(demo_root):
    df, _ = compute_masks(
        demo_root, range(12), config("masks", MaskConfig, resolution=64, workers=0, min_size=32), progress=False
    )
    return df


def test_encode_batch_flips_and_masks(vae):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    m = (torch.rand(2, 1, 64, 64) > 0.5).float()
    z, zm = encode_batch(vae, x, m)
    assert z.shape == zm.shape == (2, 2, 4, 8, 8)
    with torch.no_grad():
        enc = lambda t: vae.encode(t).latent_dist.mean * vae.config.scaling_factor  # noqa: E731
        assert torch.allclose(z[:, 0], enc(x), atol=1e-5)
        assert torch.allclose(z[:, 1], enc(x.flip(-1)), atol=1e-5)
        assert torch.allclose(zm[:, 0], enc(x * (1 - m)), atol=1e-5)
        assert torch.allclose(zm[:, 1], enc((x * (1 - m)).flip(-1)), atol=1e-5)
    assert not torch.allclose(z[:, 0], zm[:, 0])


def test_channels_last_encoding_gives_the_same_latents(vae):
    """LatentConfig.channels_last (a GPU speed knob) must not change the cache: NHWC weights and inputs."""
    import copy

    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    m = (torch.rand(2, 1, 64, 64) > 0.5).float()
    z, zm = encode_batch(vae, x, m)
    nhwc = copy.deepcopy(vae).to(memory_format=torch.channels_last)
    assert nhwc.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    z2, zm2 = encode_batch(nhwc, x, m, torch.channels_last)
    assert torch.allclose(z, z2, atol=1e-5) and torch.allclose(zm, zm2, atol=1e-5)


def test_cache_covers_every_row_in_fp16_shards(demo_root, mask_table, vae, tmp_path):
    index, report = compute_latents(
        demo_root,
        mask_table,
        vae,
        tmp_path,
        config("latents", LatentConfig, batch_size=3, shard_size=5, workers=0),
        resolution=64,
        progress=False,
    )
    write_index(index, tmp_path)
    assert report.unusable == [] and index["count"] == len(mask_table) == 12
    assert [s["count"] for s in index["shards"]] == [5, 5, 2]  # exactly shard_size, remainder last
    assert index["latent_shape"] == [4, 8, 8] and read_index(tmp_path) == json.loads(json.dumps(index))
    shards = list(iter_shards(tmp_path))
    ids = torch.cat([s["ids"] for s in shards])
    assert ids.tolist() == mask_table["id"].tolist()
    z = torch.cat([s["latents"] for s in shards])
    assert z.dtype == torch.float16 and z.shape == (12, 2, 4, 8, 8) and torch.isfinite(z).all()
    lm = torch.cat([s["latent_mask"] for s in shards])
    expected = np.stack([decode_png(b) for b in mask_table["latent"]])[:, None]
    assert np.array_equal(lm.numpy().astype(bool), expected)
    beta = torch.cat([s["beta"] for s in shards])
    assert np.allclose(beta.numpy(), mask_table["beta"].to_numpy(), atol=1e-6)


def test_shard_size_and_workers_do_not_change_values(demo_root, mask_table, vae, tmp_path):
    a, _ = compute_latents(
        demo_root,
        mask_table,
        vae,
        tmp_path / "a",
        config("latents", LatentConfig, batch_size=4, shard_size=100, workers=0),
        64,
        False,
    )
    b, _ = compute_latents(
        demo_root,
        mask_table,
        vae,
        tmp_path / "b",
        config("latents", LatentConfig, batch_size=2, shard_size=3, workers=2),
        64,
        False,
    )
    write_index(a, tmp_path / "a")
    write_index(b, tmp_path / "b")
    za = torch.cat([s["latents"] for s in iter_shards(tmp_path / "a")])
    zb = torch.cat([s["latents"] for s in iter_shards(tmp_path / "b")])
    assert len(a["shards"]) == 1 and len(b["shards"]) == 4
    assert torch.allclose(za.float(), zb.float(), atol=2e-3)


def test_unreadable_image_is_reported_not_fatal(demo_copy, mask_table, vae, tmp_path):
    from facepaint.data.celebamask import image_path

    image_path(demo_copy, 4).write_bytes(b"broken")
    index, report = compute_latents(
        demo_copy, mask_table, vae, tmp_path, config("latents", LatentConfig, workers=0), 64, False
    )
    assert index["count"] == 11 and [p.id for p in report.unusable] == [4]


def test_failed_stage_leaves_no_latents_dir(demo_root, mask_table, tmp_path, monkeypatch):
    from facepaint.common.io import write_parquet
    from facepaint.method.models import ModelConfig
    from stages import latents as stage

    monkeypatch.chdir(tmp_path)
    write_parquet(pd.DataFrame({"id": range(12), "split": "train", "present": True}), tmp_path / "split.parquet")
    write_parquet(mask_table, tmp_path / "masks.parquet", metadata={"masks": {"resolution": 64, "latent_factor": 8}})
    calls = {"n": 0}
    real = lat.encode_batch

    def dies_on_second_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(*a, **k)

    def run():
        return stage.run(
            demo_root,
            config("model", ModelConfig),
            config("latents", LatentConfig, batch_size=4, shard_size=4, workers=0),
            split=tmp_path / "split.parquet",
            masks=tmp_path / "masks.parquet",
            out=tmp_path / "latents",
            progress=False,
        )

    monkeypatch.setattr(lat, "encode_batch", dies_on_second_batch)
    with pytest.raises(RuntimeError):
        run()
    assert not (tmp_path / "latents").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".latents")]
    monkeypatch.setattr(lat, "encode_batch", real)
    index = run()
    assert index["count"] == 12 and (tmp_path / "latents" / "index.json").is_file()
    assert index["model"] == "tiny-random(seed=0)" and index["masks"]["resolution"] == 64
