import pytest
import torch

from facepaint.method.loss import masked_mse, weight_map


def test_hand_computed_example():
    # One image, one channel, 2x2 latent: face in the top row.
    pred = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])
    eps = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    mask = torch.tensor([[[[1, 1], [0, 0]]]], dtype=torch.uint8)
    # w = [[1.05, 1.05], [0.05, 0.05]]; squared errors [[1, 4], [0, 4]]
    expected = (1.05 * 1 + 1.05 * 4 + 0.05 * 0 + 0.05 * 4) / 4
    assert masked_mse(pred, eps, mask, 0.05, "masked").item() == pytest.approx(expected)


def test_weight_broadcasts_over_channels_and_is_not_renormalised():
    torch.manual_seed(0)
    pred, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    mask = (torch.rand(2, 1, 3, 3) > 0.5).to(torch.uint8)
    w = mask.float() + 0.05
    assert torch.allclose(masked_mse(pred, eps, mask, 0.05, "masked"), (w * (pred - eps) ** 2).mean())
    face_only = masked_mse(pred, eps, torch.ones_like(mask), 0.0, "masked")
    assert torch.allclose(face_only, ((pred - eps) ** 2).mean())
    assert masked_mse(pred, eps, torch.zeros_like(mask), 0.0, "masked").item() == 0.0  # no NaN
    assert torch.equal(weight_map(mask, 0.05, "masked"), w)


def test_face_errors_weigh_21_times_background_errors():
    eps = torch.zeros(1, 1, 1, 2)
    mask = torch.tensor([[[[1, 0]]]])
    face_err = masked_mse(torch.tensor([[[[1.0, 0.0]]]]), eps, mask, 0.05, "masked")
    bg_err = masked_mse(torch.tensor([[[[0.0, 1.0]]]]), eps, mask, 0.05, "masked")
    assert (face_err / bg_err).item() == pytest.approx(1.05 / 0.05)


def test_fp16_prediction_is_computed_in_fp32_and_shapes_are_checked():
    pred = torch.full((1, 4, 2, 2), 300.0, dtype=torch.float16)  # 300^2 overflows fp16
    loss = masked_mse(pred, torch.zeros(1, 4, 2, 2), torch.ones(1, 1, 2, 2), 0.05, "masked")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="differ in shape"):
        masked_mse(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3), torch.ones(1, 1, 2, 2), 0.05, "masked")
    with pytest.raises(ValueError, match="latent mask"):
        masked_mse(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.ones(1, 1, 4, 4), 0.05, "masked")


def test_uniform_weighting_is_the_plain_mse_whatever_the_mask():
    """The loss ablation (train.loss_weighting: uniform): w = 1 everywhere, face and background alike."""
    torch.manual_seed(1)
    pred, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    mask = (torch.rand(2, 1, 3, 3) > 0.5).to(torch.uint8)
    plain = ((pred - eps) ** 2).mean()
    assert torch.allclose(masked_mse(pred, eps, mask, 0.05, "uniform"), plain)
    assert torch.allclose(masked_mse(pred, eps, 1 - mask, 0.3, "uniform"), plain)
    assert not torch.allclose(masked_mse(pred, eps, mask, 0.05, "masked"), plain)
    with pytest.raises(ValueError, match="loss weighting must be one of"):
        masked_mse(pred, eps, mask, 0.05, "focal")
