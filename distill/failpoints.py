"""Named crash points for the kill-and-resume tests: ``DISTILL_FAILPOINT=name[@N]`` SIGKILLs the process.

A pre-empted cluster job dies by SIGKILL at an arbitrary instruction. The tests reproduce the
dangerous instants exactly: with ``DISTILL_FAILPOINT=checkpoint.swap@2`` the process kills itself
(no cleanup, no ``finally``, no flush) the second time it reaches ``failpoint("checkpoint.swap")``.
Unset, a failpoint costs one comparison.

Points: ``train.step`` (after an optimiser update), ``epoch.logged`` (metrics line written, not yet
checkpointed), ``checkpoint.staged`` (new state complete in ``state.tmp``), ``checkpoint.swap``
(old state moved aside, new one not yet in place), ``run.weights`` (final weights written, no
summary yet), ``cache.view`` (a view set computed), ``cache.files`` (arrays written to the
temporary cache, no meta yet), ``cache.swap`` (old cache moved aside, new one not yet in place).
"""

from __future__ import annotations

import os
import signal

ENV = "DISTILL_FAILPOINT"


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, nth = value.partition("@")
    return name, int(nth) if nth else 1


_TARGET, _NTH = _parse(os.environ.get(ENV))
_hits = 0


def failpoint(name: str) -> None:
    """SIGKILL this process if ``$DISTILL_FAILPOINT`` names this point (on its N-th hit)."""
    global _hits
    if name != _TARGET:
        return
    _hits += 1
    if _hits == _NTH:
        os.kill(os.getpid(), signal.SIGKILL)
