"""The knowledge-distillation loss (Hinton et al. 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KDLoss(nn.Module):
    """``loss = alpha * T^2 * KL(p_teacher,T || p_student,T) + (1 - alpha) * CE(label)``.

    ``p_x,T = softmax(logits_x / T)``. The KL term is summed over classes and averaged over the
    batch (``reduction='batchmean'``, not over every element as DeiT's issue 61 warns); the ``T^2``
    factor keeps its gradient scale independent of ``T``. The CE term uses ``label_smoothing``; on a
    mixed image (mixup / cutmix) it is ``lam * CE(label) + (1 - lam) * CE(partner's label)``, while
    the teacher's logits are already those of the mixed image. With ``alpha = 0`` or no teacher
    logits, it is plain cross-entropy.

    A label of -1 marks an unlabelled image (a transfer set's): the KD term covers every image, the CE
    term only the labelled parts: each image's CE weighs ``lam`` for its own label and ``1 - lam`` for its
    partner's, a part without a label weighs 0, and the CE is the weighted sum over the total weight
    (the plain mean when every image is labelled; 0 when none is).

    Returns a dict with ``loss`` (to optimise), ``ce`` and ``kd`` (detached, for logging).
    """

    def __init__(self, alpha: float = 0.9, temperature: float = 4.0, label_smoothing: float = 0.0):
        super().__init__()
        self.alpha = alpha
        self.temperature = temperature
        self.label_smoothing = label_smoothing

    def forward(
        self,
        student_logits: torch.Tensor,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        partner_labels: torch.Tensor | None = None,
        lam: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        student_logits = student_logits.float()
        ce, weight = self._labelled_ce(student_logits, labels)
        if partner_labels is not None:
            other, other_weight = self._labelled_ce(student_logits, partner_labels)
            ce = lam * ce + (1 - lam) * other
            both = (weight > 0) & (other_weight > 0)  # exactly 1 where both parts are labelled
            weight = torch.where(both, torch.ones_like(lam), lam * weight + (1 - lam) * other_weight)
        ce = ce.sum() / weight.sum().clamp(min=1e-12)
        if teacher_logits is None or self.alpha == 0.0:
            if self.alpha == 1.0:
                raise ValueError("kd.alpha = 1 needs teacher logits")
            return {"loss": ce, "ce": ce.detach(), "kd": torch.zeros((), device=ce.device)}
        temp = self.temperature
        log_p_student = F.log_softmax(student_logits / temp, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits.float() / temp, dim=-1)
        kd = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (temp * temp)
        loss = self.alpha * kd + (1.0 - self.alpha) * ce
        return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}

    def _labelled_ce(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image CE (0 where the label is -1) and weight (1 labelled, 0 not)."""
        labelled = labels >= 0
        ce = F.cross_entropy(logits, labels.clamp(min=0), label_smoothing=self.label_smoothing, reduction="none")
        return ce * labelled, labelled.to(logits.dtype)
