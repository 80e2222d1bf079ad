"""Did the run learn? One check, after the first epoch and at the end of every teacher and student run.

A run that diverged or never left chance still ends with weights, a summary and exit 0 (``train.lr=50``: 8.6%
and a loss in the thousands; a batch size that leaves one step per epoch: 6%). :func:`verdict` says so in one
line, which the trainer prints as a warning and records in the summary (``learned``, ``health``), so that no
such run reads as a result. The thresholds are far from any run that learnt: chance is ``1 / classes``, and a
cross-entropy starts near ``ln(classes)`` (2.30 on CIFAR-10), so a mean above twice that has left the start
behind in the wrong direction.
"""

from __future__ import annotations

import math

CHANCE_MARGIN = 1.5  # accuracy at most 1.5x chance (15% on 10 classes) after a whole run: it did not learn
DIVERGED = 2.0  # the labels' cross-entropy above 2 x ln(classes) (4.6 on 10 classes): it ran away


def verdict(train_ce: float | None, train_acc: float | None, eval_acc: float | None, classes: int,
            final: bool) -> str | None:  # fmt: skip
    """None when the numbers look like learning, else what is wrong and what to change, in one line.

    ``train_ce`` and ``train_acc`` are the epoch's means on the labelled images (None when it had none);
    ``eval_acc`` the held-out or test accuracy (None when not measured). After the first epoch (``final``
    False) only a runaway loss is named: accuracy near chance is normal that early in a short run.
    """
    start = math.log(classes)
    if train_ce is not None and (not math.isfinite(train_ce) or train_ce > DIVERGED * start):
        return (
            f"the training loss is {train_ce:.3g}, above {DIVERGED:g} x its starting value ln({classes}) = {start:.2f}: "
            "the run is diverging; lower train.lr (or raise train.warmup_epochs)"
        )
    if not final:
        return None
    chance = 1 / classes
    seen = [(name, acc) for name, acc in (("training", train_acc), ("held-out", eval_acc)) if acc is not None]
    if seen and all(acc <= CHANCE_MARGIN * chance for _, acc in seen):
        said = " and ".join(f"{name} accuracy {acc:.1%}" for name, acc in seen)
        return (
            f"this run did not learn: {said}, at most {CHANCE_MARGIN:g} x chance ({chance:.0%}); check train.lr, "
            "train.batch_size (a few steps per epoch never leave the warm-up) and train.epochs"
        )
    return None
