"""The distillation losses: Hinton's KD and three logit losses that beat it on CIFAR-100, all from cached logits.

Every loss is ``(1 - alpha) * CE(label) + alpha * D(student, teacher)``; ``kd.loss`` chooses ``D``:

- ``kl`` (Hinton et al. 2015): ``T^2 * KL(p_t || p_s)``, ``p = softmax(z / T)``.
- ``kl_std`` (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation"): ``kl`` on z-scored
  logits, ``Z(z) = (z - mean(z)) / std(z)`` per image (population std over the classes), at a base temperature
  (2) and weighed ``std_weight`` (10: with ``alpha = 0.9`` the CE weighs 0.1 and the KD term 9, the paper's).
- ``dkd`` (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation"): ``dkd_alpha * TCKD + dkd_beta * NCKD``
  (1 and 8), each times ``T^2``; TCKD is the KL between the binary (target, rest) distributions, NCKD the KL
  between the distributions over the non-target classes alone. The paper proves ``KL = TCKD + (1 - p_t) NCKD``
  (``p_t`` the teacher's target probability). The term rises linearly from 0 over the first ``dkd_warmup`` of
  the run (the paper's 20 of 240 epochs). The target class is the label; an unlabelled image's (a transfer
  set's) is the teacher's argmax; a mixed image's is the label of its larger part.
- ``dkd_std``: ``dkd`` on z-scored logits at the base temperature, weighed ``std_weight``.
- ``dist`` (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher"):
  ``tau^2 * (dist_beta * (1 - mean_i pearson(p_s[i, :], p_t[i, :])) + dist_gamma * (1 - mean_c pearson(p_s[:, c],
  p_t[:, c])))``, inter-class relations per image and intra-class relations per class over the batch, with the
  paper's CIFAR-100 values tau = T = 4 and beta = gamma = 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("kl", "kl_std", "dkd", "dkd_std", "dist")
STD_EPS = 1e-7  # added to the standard deviation, as the paper's code does


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Each row's z-score: ``(z - mean(z)) / (std(z) + eps)``, the population std over the classes."""
    mean = logits.mean(dim=-1, keepdim=True)
    return (logits - mean) / (logits.std(dim=-1, keepdim=True, correction=0) + STD_EPS)


def kl_per_image(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` for each image, (B,)."""
    log_p_s = F.log_softmax(student / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * temperature**2


def dkd_parts(
    student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DKD's ``(TCKD, NCKD)`` for each image, each (B,) and times ``T^2``, computed in log space (no log of 0)."""
    is_target = F.one_hot(target, student.shape[-1]).bool()

    def binary_and_rest(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z / temperature
        log_all = torch.logsumexp(z, dim=-1)
        log_target = z.gather(-1, target[:, None]).squeeze(-1) - log_all  # log p_target
        rest = z.masked_fill(is_target, float("-inf"))
        log_rest = torch.logsumexp(rest, dim=-1) - log_all  # log (1 - p_target)
        return torch.stack([log_target, log_rest], dim=-1), F.log_softmax(rest, dim=-1)  # (B, 2), (B, C)

    b_s, q_s = binary_and_rest(student)
    b_t, q_t = binary_and_rest(teacher)
    tckd = (b_t.exp() * (b_t - b_s)).sum(-1)
    nckd = (q_t.exp() * (q_t - q_s).masked_fill(is_target, 0.0)).sum(-1)  # the target holds -inf - -inf: drop it
    return tckd * temperature**2, nckd * temperature**2


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``, (rows,)."""
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def dist_parts(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST's ``(inter, intra)`` relation losses of a batch, scalars times ``tau^2``."""
    p_s, p_t = F.softmax(student / tau, dim=-1), F.softmax(teacher / tau, dim=-1)
    inter = 1 - _pearson(p_s, p_t).mean()
    intra = 1 - _pearson(p_s.T, p_t.T).mean()
    return inter * tau**2, intra * tau**2


class KDLoss(nn.Module):
    """``loss = alpha * D(student, teacher) + (1 - alpha) * CE(label)``, ``D`` chosen by ``loss`` (module docstring).

    The D term is averaged over the batch (``'batchmean'``, not over every element as DeiT's issue 61 warns). The CE
    term uses ``label_smoothing``; on a mixed image (mixup / cutmix) it is ``lam * CE(label) + (1 - lam) *
    CE(partner's label)``, while the teacher's logits are already those of the mixed image. With ``alpha = 0`` or
    no teacher logits, it is plain cross-entropy.

    A label of -1 marks an unlabelled image (a transfer set's): the D term covers every image, the CE term only the
    labelled parts: each image's CE weighs ``lam`` for its own label and ``1 - lam`` for its partner's, a part without
    a label weighs 0, and the CE is the weighted sum over the total weight (the plain mean when every image is
    labelled; 0 when none is).

    With a teacher, the whole loss is times ``loss_scale`` (``1 / T``: the KL term's gradient at a cross-entropy's
    size); plain cross-entropy is not scaled.

    Returns a dict with ``loss`` (to optimise), ``ce`` and ``kd`` (the D term; detached, for logging), and
    ``per_image`` (B,), detached: each image's CE (0 unlabelled) without a teacher, its KL to the teacher at T with
    one: the hardness :class:`distill.engine.Hardness` ranks images by.
    """

    def __init__(
        self,
        alpha: float = 0.9,
        temperature: float = 4.0,
        loss_scale: float = 1.0,
        label_smoothing: float = 0.0,
        loss: str = "kl",
        std_temperature: float = 2.0,
        std_weight: float = 10.0,
        dkd_alpha: float = 1.0,
        dkd_beta: float = 8.0,
        dkd_warmup: float = 20 / 240,
        dist_beta: float = 2.0,
        dist_gamma: float = 2.0,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"kd.loss '{loss}' is not one of {', '.join(LOSSES)}")
        self.alpha = alpha
        self.temperature = temperature
        self.loss_scale = loss_scale
        self.label_smoothing = label_smoothing
        self.loss = loss
        self.std_temperature, self.std_weight = std_temperature, std_weight
        self.dkd_alpha, self.dkd_beta, self.dkd_warmup = dkd_alpha, dkd_beta, dkd_warmup
        self.dist_beta, self.dist_gamma = dist_beta, dist_gamma

    def forward(
        self,
        student_logits: torch.Tensor,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        partner_labels: torch.Tensor | None = None,
        lam: torch.Tensor | None = None,
        progress: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """``progress``: the fraction of the run done after this step, in (0, 1] (DKD's warm-up reads it)."""
        student_logits = student_logits.float()
        ce, weight = self._labelled_ce(student_logits, labels)
        if partner_labels is not None:
            other, other_weight = self._labelled_ce(student_logits, partner_labels)
            ce = lam * ce + (1 - lam) * other
            both = (weight > 0) & (other_weight > 0)  # exactly 1 where both parts are labelled
            weight = torch.where(both, torch.ones_like(lam), lam * weight + (1 - lam) * other_weight)
        per_image = ce.detach()
        ce = ce.sum() / weight.sum().clamp(min=1e-12)
        if teacher_logits is None or self.alpha == 0.0:
            if self.alpha == 1.0:
                raise ValueError("kd.alpha = 1 needs teacher logits")
            return {"loss": ce, "ce": ce.detach(), "kd": torch.zeros((), device=ce.device), "per_image": per_image}
        teacher_logits = teacher_logits.float()
        kd = self.distillation(student_logits, teacher_logits, labels, partner_labels, lam, progress)
        loss = self.loss_scale * (self.alpha * kd + (1.0 - self.alpha) * ce)
        with torch.no_grad():  # how far each image is from its teacher: KL at T, whichever D term trains
            per_image = kl_per_image(student_logits, teacher_logits, self.temperature)
        return {"loss": loss, "ce": ce.detach(), "kd": kd.detach(), "per_image": per_image}

    def distillation(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        labels: torch.Tensor,
        partner_labels: torch.Tensor | None = None,
        lam: torch.Tensor | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        """The D term of the batch, a scalar (float32 logits in, (B, C) each)."""
        if self.loss == "kl":
            return kl_per_image(student, teacher, self.temperature).mean()
        if self.loss == "dist":
            inter, intra = dist_parts(student, teacher, self.temperature)
            return self.dist_beta * inter + self.dist_gamma * intra
        standardized = self.loss.endswith("_std")
        temp = self.std_temperature if standardized else self.temperature
        if standardized:
            student, teacher = standardize(student), standardize(teacher)
        if self.loss == "kl_std":
            return self.std_weight * kl_per_image(student, teacher, temp).mean()
        tckd, nckd = dkd_parts(student, teacher, self.dkd_target(teacher, labels, partner_labels, lam), temp)
        warm = min(progress / self.dkd_warmup, 1.0) if self.dkd_warmup > 0 else 1.0
        return warm * (self.std_weight if standardized else 1.0) * (self.dkd_alpha * tckd + self.dkd_beta * nckd).mean()

    @staticmethod
    def dkd_target(
        teacher: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor | None, lam: torch.Tensor | None
    ) -> torch.Tensor:
        """DKD's target class: the label of the image's larger part, else (no label) the teacher's argmax."""
        target = labels
        if partner_labels is not None:
            target = torch.where(lam >= 0.5, labels, partner_labels)
        return torch.where(target >= 0, target, teacher.argmax(-1))

    def _labelled_ce(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image CE (0 where the label is -1) and weight (1 labelled, 0 not)."""
        labelled = labels >= 0
        ce = F.cross_entropy(logits, labels.clamp(min=0), label_smoothing=self.label_smoothing, reduction="none")
        return ce * labelled, labelled.to(logits.dtype)
