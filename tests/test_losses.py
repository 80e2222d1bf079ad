import math

import pytest
import torch

from distill.losses import KDLoss


def test_kd_loss_golden_value():
    """One hand-computed pair: 2 classes, T = 2, alpha = 0.5."""
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    # p_s,T = softmax([0.5, 0]); p_t,T = softmax([0, 1])
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = 0.5 * 4 * kl + 0.5 * ce
    out = KDLoss(alpha=0.5, temperature=2.0)(s, y, t)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["kd"].item() == pytest.approx(4 * kl, rel=1e-6)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert expected == pytest.approx(0.67144, abs=1e-5)  # pinned: 0.5*4*0.25757 + 0.5*0.31326


def test_kd_scale_is_per_example_not_per_element():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    y = torch.zeros(8, dtype=torch.long)
    full = KDLoss(alpha=1.0, temperature=4.0)(s, y, t)["kd"]
    # duplicating the batch leaves a batch mean unchanged; a per-element mean would be 10x smaller
    assert KDLoss(alpha=1.0, temperature=4.0)(s.repeat(2, 1), y.repeat(2), t.repeat(2, 1))[
        "kd"
    ].item() == pytest.approx(full.item(), rel=1e-5)
    per_example = (
        sum(
            torch.nn.functional.kl_div(torch.log_softmax(s[i] / 4, -1), torch.softmax(t[i] / 4, -1), reduction="sum")
            for i in range(8)
        )
        / 8
        * 16
    )
    assert full.item() == pytest.approx(per_example.item(), rel=1e-5)


def test_alpha_zero_is_cross_entropy_with_smoothing():
    s, y = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    out = KDLoss(alpha=0.0, label_smoothing=0.1)(s, y, None)
    assert out["loss"].item() == pytest.approx(torch.nn.functional.cross_entropy(s, y, label_smoothing=0.1).item())


def test_same_logits_give_zero_kd():
    s = torch.randn(4, 10)
    assert KDLoss(alpha=1.0)(s, torch.zeros(4, dtype=torch.long), s.clone())["kd"].item() == pytest.approx(0, abs=1e-6)


def test_mixed_images_weigh_both_labels():
    """Mixup / cutmix: CE = lam * CE(label) + (1 - lam) * CE(partner's label), per image, then the batch mean."""
    torch.manual_seed(1)
    s, t = torch.randn(3, 10), torch.randn(3, 10)
    y, y2, lam = torch.tensor([1, 2, 3]), torch.tensor([4, 2, 0]), torch.tensor([0.25, 1.0, 0.6])
    out = KDLoss(alpha=0.3, temperature=2.0, label_smoothing=0.1)(s, y, t, y2, lam)
    ce = lambda labels: torch.nn.functional.cross_entropy(s, labels, label_smoothing=0.1, reduction="none")  # noqa: E731
    expected_ce = (lam * ce(y) + (1 - lam) * ce(y2)).mean()
    assert out["ce"].item() == pytest.approx(expected_ce.item(), rel=1e-6)
    plain = KDLoss(alpha=0.3, temperature=2.0, label_smoothing=0.1)(s, y, t)
    assert out["kd"].item() == pytest.approx(plain["kd"].item())  # the teacher's logits are already the mix's
    assert out["loss"].item() == pytest.approx(0.3 * plain["kd"].item() + 0.7 * expected_ce.item(), rel=1e-6)
    unmixed = KDLoss(alpha=0.3, temperature=2.0)(s, y, t, y2, torch.ones(3))
    assert unmixed["loss"].item() == pytest.approx(KDLoss(alpha=0.3, temperature=2.0)(s, y, t)["loss"].item())
