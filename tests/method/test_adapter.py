import pytest
import torch

from facepaint.method.adapter import FaceAdapter, condition
from facepaint.method.models import tiny_components


def test_formula_against_a_hand_computation():
    torch.manual_seed(0)
    ad = FaceAdapter(4)
    with torch.no_grad():
        ad.w2.weight.copy_(torch.randn(4, 4))
    e = torch.randn(2, 3, 4)
    beta = torch.tensor([0.5, 0.25])
    w1, w2 = ad.w1.weight, ad.w2.weight
    by_hand = torch.empty_like(e)
    for b in range(2):
        for t in range(3):
            h = w1 @ e[b, t]
            a = w2 @ (h * torch.sigmoid(h))  # SiLU
            by_hand[b, t] = e[b, t] + 0.3 * beta[b] * a
    assert torch.allclose(condition(e, beta, ad, 0.3), by_hand, atol=1e-6)
    assert torch.allclose(condition(e, 0.5, ad, 0.3)[0], by_hand[0], atol=1e-6)  # scalar beta


def test_zero_init_reproduces_the_base_model_exactly():
    """W2 = 0 at initialisation: the conditioned UNet's prediction is the base model's, bit for bit."""
    comps = tiny_components(seed=0, parts=("unet", "text_encoder", "tokenizer"))
    ad = FaceAdapter(comps.text_encoder.config.hidden_size)
    assert torch.count_nonzero(ad.w2.weight) == 0 and torch.count_nonzero(ad.w1.weight) > 0
    ids = comps.tokenizer(
        ["a photo of a smiling woman", ""], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    g = torch.Generator().manual_seed(0)
    x, beta = torch.randn(2, 9, 8, 8, generator=g), torch.tensor([0.3, 0.6])
    with torch.no_grad():
        e = comps.text_encoder(ids)[0]
        base = comps.unet(x, 500, encoder_hidden_states=e).sample
        adapted = comps.unet(x, 500, encoder_hidden_states=condition(e, beta, ad, 0.3)).sample
    assert torch.equal(base, adapted)
    # ...and the adapter's first gradient is not zero, so it can learn from there.
    e = e.detach()
    condition(e, beta, ad, 0.3).square().sum().backward()
    assert ad.w2.weight.grad.abs().sum() > 0


def test_beta_zero_or_no_adapter_leaves_embeddings_unchanged():
    ad = FaceAdapter(8)
    torch.nn.init.normal_(ad.w2.weight)
    e = torch.randn(3, 5, 8)
    assert torch.equal(condition(e, 0.0, ad, 0.3), e)
    assert condition(e, 0.4, None, 0.3) is e and condition(e, 0.4, ad, 0.0) is e
    assert not torch.allclose(condition(e, 0.4, ad, 0.3), e)
    with pytest.raises(ValueError, match="beta"):
        condition(e, torch.ones(2), ad, 0.3)
