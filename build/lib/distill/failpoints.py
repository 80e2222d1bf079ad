"""Named fault points for the kill-and-resume tests: ``DISTILL_FAILPOINT=name[@N][:stall=S]``.

A pre-empted cluster job dies by SIGKILL at an arbitrary instruction. The tests reproduce the
dangerous instants exactly: with ``DISTILL_FAILPOINT=checkpoint.swap@2`` the process kills itself
(no cleanup, no ``finally``, no flush) the second time it reaches ``failpoint("checkpoint.swap")``.
With ``:stall=S`` it sleeps S seconds there instead (to make one process late, as a slow disk or a
busy node would), and ``DISTILL_FAILPOINT_RANK=r`` limits either to the process of that rank.
Unset, a failpoint costs one comparison.

Points: ``train.step`` (after an optimiser update), ``epoch.logged`` (metrics line written, not yet
checkpointed), ``checkpoint.save`` (before this process writes its part of a checkpoint),
``checkpoint.staged`` (new state complete in ``state.tmp``), ``checkpoint.swap`` (old state moved
aside, new one not yet in place), ``run.weights`` (final weights written, no summary yet),
``cache.view`` (a view set computed), ``cache.files`` (arrays written to the temporary cache, no
meta yet), ``cache.swap`` (old cache moved aside, new one not yet in place).
"""

from __future__ import annotations

import os
import signal
import time

ENV, RANK_ENV = "DISTILL_FAILPOINT", "DISTILL_FAILPOINT_RANK"


def _parse(value: str | None) -> tuple[str | None, int, float]:
    if not value:
        return None, 0, 0.0
    point, _, action = value.partition(":")
    name, _, nth = point.partition("@")
    stall = float(action.removeprefix("stall=")) if action.startswith("stall=") else 0.0
    return name, int(nth) if nth else 1, stall


_TARGET, _NTH, _STALL = _parse(os.environ.get(ENV))
_hits = 0


def failpoint(name: str) -> None:
    """SIGKILL (or stall) this process if ``$DISTILL_FAILPOINT`` names this point, on its N-th hit."""
    global _hits
    if name != _TARGET:
        return
    if os.environ.get(RANK_ENV) not in (None, os.environ.get("RANK", "0")):
        return
    _hits += 1
    if _hits == _NTH:
        if _STALL:
            time.sleep(_STALL)
        else:
            os.kill(os.getpid(), signal.SIGKILL)
