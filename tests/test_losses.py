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


def test_loss_scale_scales_a_distilling_loss_and_not_plain_cross_entropy():
    s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    plain, scaled = KDLoss(temperature=4.0)(s, y, t), KDLoss(temperature=4.0, loss_scale=0.25)(s, y, t)
    assert scaled["loss"].item() == pytest.approx(plain["loss"].item() / 4)
    assert (scaled["ce"], scaled["kd"]) == (plain["ce"], plain["kd"])  # the logged terms are the unscaled ones
    labels_only = KDLoss(alpha=0.0, loss_scale=0.25)(s, y, t)["loss"]
    assert labels_only.item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item())


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


# The newer logit losses (issue 25), each against its paper's formula written out with the math module.


def _softmax(z: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _zscore(z: list[float]) -> list[float]:
    mean = sum(z) / len(z)
    std = math.sqrt(sum((v - mean) ** 2 for v in z) / len(z))  # the population std, as Sun et al. define it
    return [(v - mean) / (std + 1e-7) for v in z]


S, T_, Y = [[1.0, 2.0, 4.0]], [[0.0, 3.0, 3.5]], [0]


def test_kl_std_golden_value():
    """Sun et al. 2024: KD on z-scored logits at base temperature 2, weighed 10 here (with alpha 0.9: the paper's 9)."""
    expected = 10 * 4 * _kl(_softmax(_zscore(T_[0]), 2), _softmax(_zscore(S[0]), 2))
    out = KDLoss(alpha=0.9, loss="kl_std")(torch.tensor(S), torch.tensor(Y), torch.tensor(T_))
    assert out["kd"].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(1.75630, abs=1e-4)  # pinned


@pytest.mark.parametrize("loss", ["kl_std", "dkd_std"])
def test_standardised_losses_ignore_shifts_and_scales_of_either_side(loss):
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    crit = KDLoss(alpha=1.0, loss=loss)
    base = crit(s, y, t)["kd"].item()
    assert crit(3.0 * s + 7.0, y, t)["kd"].item() == pytest.approx(base, rel=1e-4)
    assert crit(s, y, 0.25 * t - 2.0)["kd"].item() == pytest.approx(base, rel=1e-4)
    assert KDLoss(alpha=1.0, loss="kl")(3.0 * s, y, t)["kd"].item() != pytest.approx(base, rel=1e-2)  # kl is not


def _dkd_by_hand(s: list[float], t: list[float], target: int, temp: float) -> tuple[float, float]:
    """Zhao et al. 2022, eq. (1)-(4): b = [p_target, 1 - p_target]; p-hat = softmax over the other classes."""
    ps, pt = _softmax(s, temp), _softmax(t, temp)
    tckd = _kl([pt[target], 1 - pt[target]], [ps[target], 1 - ps[target]])
    others = [k for k in range(len(s)) if k != target]
    nckd = _kl(_softmax([t[k] for k in others], temp), _softmax([s[k] for k in others], temp))
    return tckd * temp**2, nckd * temp**2


def test_dkd_golden_value():
    tckd, nckd = _dkd_by_hand(S[0], T_[0], 0, 4.0)
    out = KDLoss(alpha=1.0, loss="dkd")(torch.tensor(S), torch.tensor(Y), torch.tensor(T_))
    assert out["kd"].item() == pytest.approx(1.0 * tckd + 8.0 * nckd, rel=1e-5)  # the paper's alpha 1, beta 8
    assert (tckd, nckd) == (pytest.approx(0.101251, abs=1e-5), pytest.approx(0.276391, abs=1e-5))  # pinned


def test_dkd_decomposes_todays_kl():
    """The DKD paper's identity KL = TCKD + (1 - p_t) NCKD, against the kl loss's own term."""
    from distill.losses import dkd_parts, kl_per_image

    torch.manual_seed(0)
    s, t, y = 3 * torch.randn(16, 10), 3 * torch.randn(16, 10), torch.randint(0, 10, (16,))
    tckd, nckd = dkd_parts(s, t, y, 4.0)
    p_target = torch.softmax(t / 4.0, -1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(tckd + (1 - p_target) * nckd, kl_per_image(s, t, 4.0), rtol=1e-5, atol=1e-6)
    kl = KDLoss(alpha=1.0, loss="kl", temperature=4.0)(s, y, t)["kd"]
    torch.testing.assert_close((tckd + (1 - p_target) * nckd).mean(), kl, rtol=1e-5, atol=1e-6)


def test_dkd_warms_up_over_its_fraction_of_the_run():
    s, t, y = torch.tensor(S), torch.tensor(T_), torch.tensor(Y)
    crit = KDLoss(alpha=1.0, loss="dkd", dkd_warmup=0.2)
    full = crit(s, y, t, progress=0.9)["kd"].item()
    assert crit(s, y, t, progress=0.05)["kd"].item() == pytest.approx(full / 4, rel=1e-6)
    assert crit(s, y, t, progress=0.2)["kd"].item() == pytest.approx(full, rel=1e-6)


def test_dkd_target_without_a_label_is_the_teachers_argmax_and_a_mix_takes_its_larger_part():
    t = torch.tensor([[0.0, 5.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    labels, partners = torch.tensor([-1, 2, 0]), torch.tensor([0, -1, 1])
    assert KDLoss.dkd_target(t, labels, None, None).tolist() == [1, 2, 0]
    lam = torch.tensor([0.7, 0.3, 0.4])  # image 0: its own part (unlabelled); 1: the partner's (unlabelled); 2: 1
    assert KDLoss.dkd_target(t, labels, partners, lam).tolist() == [1, 0, 1]
    s = torch.randn(3, 3)
    out = KDLoss(alpha=1.0, loss="dkd")(s, labels, t)["kd"]
    tckd, nckd = zip(*(_dkd_by_hand(s[i].tolist(), t[i].tolist(), k, 4.0) for i, k in enumerate([1, 2, 0])))
    assert out.item() == pytest.approx(sum(a + 8 * b for a, b in zip(tckd, nckd)) / 3, rel=1e-5)


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_dist_golden_value():
    """Huang et al. 2022: tau^2 (beta (1 - mean_i r(p_s[i], p_t[i])) + gamma (1 - mean_c r(p_s[:, c], p_t[:, c])))."""
    s, t = [[1.0, 2.0, 4.0], [0.5, -1.0, 2.0]], [[0.0, 3.0, 3.5], [2.0, 0.0, 1.0]]
    ps, pt = [_softmax(r, 4.0) for r in s], [_softmax(r, 4.0) for r in t]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ps, pt)) / 2
    intra = 1 - sum(_pearson([r[c] for r in ps], [r[c] for r in pt]) for c in range(3)) / 3
    expected = 16 * (2 * inter + 2 * intra)  # the paper's CIFAR-100 values: tau 4, beta = gamma = 2
    out = KDLoss(alpha=1.0, loss="dist")(torch.tensor(s), torch.tensor([0, 1]), torch.tensor(t))
    assert out["kd"].item() == pytest.approx(expected, rel=1e-4)
    assert out["kd"].item() > 0 and KDLoss(alpha=1.0, loss="dist")(torch.tensor(t), torch.tensor([0, 1]), torch.tensor(
        t))["kd"].item() == pytest.approx(0, abs=1e-3)  # fmt: skip


@pytest.mark.parametrize("loss", ["kl", "kl_std", "dkd", "dkd_std", "dist"])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_every_loss_has_finite_gradients(loss, scale):
    torch.manual_seed(0)
    s = (scale * torch.randn(8, 10)).requires_grad_()
    t = scale * torch.randn(8, 10)
    t[0] = 0.0  # a row of equal logits: a zero std, a uniform softmax
    y = torch.tensor([0, 1, 2, -1, 4, 5, -1, 7])  # two unlabelled images
    out = KDLoss(alpha=0.9, loss=loss)(s, y, t)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="kd.loss 'mse' is not one of kl, kl_std, dkd, dkd_std, dist"):
        KDLoss(loss="mse")
