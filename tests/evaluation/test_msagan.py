"""MSaGAN (facepaint.evaluation.msagan): the attention blend, the ExDy variants, the mask losses against hand
computations, the losses' terms, and a resumed training run bit-identical to an uninterrupted one."""

from dataclasses import replace

import pytest
import torch

from facepaint.evaluation import msagan
from facepaint.evaluation.msagan import (
    Discriminator,
    GanConfig,
    GanData,
    Generator,
    attention_blend,
    mask_loss,
    train_gan,
)

CFG = GanConfig(
    attribute="Smiling", variant="E2D2", mask_loss="sde", lambda_mask=10.0, lambda_cycle=20.0, lambda_self=100.0,
    lambda_gp=10.0, lambda_cls=1.0, d_iters=2, lr=2e-4, beta1=0.5, beta2=0.999, image_size=64, channels=4,
    batch_size=4, epochs=1, max_steps=4, checkpoint_every=0, seed=3, init="sagan", device="cpu",
)  # fmt: skip


def data(n=8, size=64, seed=0) -> GanData:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    c = (torch.arange(n) % 2).float()
    guide = torch.zeros(n, 1, size, size)
    guide[..., size // 2 :, size // 4 : 3 * size // 4] = 1
    return GanData(x, c, guide)


def test_the_attention_blend_keeps_the_photo_where_the_mask_is_zero():
    x, attr = torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), -1.0)
    b = torch.tensor([[[[0.0, 1.0], [0.25, 0.5]]]])
    out = attention_blend(attr, b, x)
    assert out[0, :, 0, 0].eq(0.5).all() and out[0, :, 0, 1].eq(-1).all()
    assert torch.allclose(out[0, :, 1, 0], torch.tensor(0.25 * -1 + 0.75 * 0.5))


@pytest.mark.parametrize("variant", msagan.VARIANTS)
def test_every_variant_edits_through_its_attention_mask(variant, monkeypatch):
    torch.manual_seed(0)
    G = Generator(variant, channels=4).eval()
    assert (G.enc_m is not None) == (variant[1] == "2")
    assert hasattr(G, "dec_m") == (variant[3] == "2")
    seen = {}
    real = msagan.attention_blend

    def spy(attr, b, x):
        seen.update(attr=attr, b=b, x=x)
        return real(attr, b, x)

    monkeypatch.setattr(msagan, "attention_blend", spy)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    out, b = G(x, torch.tensor([0.0, 1.0]))
    assert out.shape == x.shape and b.shape == (2, 1, 64, 64) and ((b >= 0) & (b <= 1)).all()
    assert torch.equal(out, seen["b"] * seen["attr"] + (1 - seen["b"]) * x) and seen["x"] is x
    other, _ = G(x, torch.tensor([1.0, 0.0]))
    assert not torch.equal(out, other)  # the target reaches the output


def test_the_mask_losses_against_a_hand_computation():
    guide = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    b = torch.tensor([0.25, 1.0, 0.5, 0.0]).view(1, 1, 2, 2)
    assert mask_loss("sde", b, guide).item() == pytest.approx(0.75 / 4)  # only the guide's part b leaves out
    assert mask_loss("mae", b, guide).item() == pytest.approx((0.75 + 0.5) / 4)
    assert mask_loss("mse", b, guide).item() == pytest.approx((0.5625 + 0.25) / 4)
    assert mask_loss("none", b, guide).item() == 0
    # the set difference error pushes a too small mask to grow, and leaves a too large one alone
    b = b.clone().requires_grad_(True)
    mask_loss("sde", b, guide).backward()
    assert b.grad.flatten().tolist() == [-0.25, 0.0, 0.0, 0.0]


def test_the_generator_loss_has_every_term_and_the_mask_loss_on_both_passes(monkeypatch):
    torch.manual_seed(0)
    G, D = Generator("E1D1", 4), Discriminator(64, 4)
    d = data()
    calls = []
    real = msagan.mask_loss
    monkeypatch.setattr(msagan, "mask_loss", lambda k, b, g: calls.append(b) or real(k, b, g))
    loss, logs = msagan.generator_loss(G, D, CFG, d.x[:2], d.c[:2], d.guide[:2])
    assert set(logs) == {"g_adv", "g_cls", "g_cycle", "g_self", "g_mask"} and len(calls) == 2
    expected = logs["g_adv"] + logs["g_cls"] + 20 * logs["g_cycle"] + 100 * logs["g_self"] + 10 * logs["g_mask"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    d = data()
    G1, D1, steps = train_gan(d, CFG, checkpoints=tmp_path / "a", progress=False)
    assert steps == 4
    _, _, first = train_gan(d, CFG, checkpoints=tmp_path / "b", stop_after=2, progress=False)  # "killed" at 2
    assert first == 2
    G2, D2, steps = train_gan(d, CFG, checkpoints=tmp_path / "b", progress=False)
    assert steps == 4
    for a, b in zip(G1.state_dict().values(), G2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(D1.state_dict().values(), D2.state_dict().values()):
        assert torch.equal(a, b)
    # another config does not resume from it (a changed loss starts over)
    G3, _, _ = train_gan(d, replace(CFG, mask_loss="mae"), checkpoints=tmp_path / "b", progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G3.state_dict().values()))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="gan.variant"):
        replace(CFG, variant="E3D1")
    with pytest.raises(ValueError, match="gan.mask_loss"):
        replace(CFG, mask_loss="l1")
    with pytest.raises(ValueError, match="gan.attribute"):
        replace(CFG, attribute="Bald")
    with pytest.raises(ValueError, match="gan.image_size"):
        replace(CFG, image_size=100)
