"""User-facing errors: one clear line, exit code 2, no traceback.

Anything a user can cause (a bad file, a wrong shape, a stale cache, an over-cap model, a missing
download) raises :class:`UserError` with a message that names the problem and the fix. The entry
points run through :func:`cli_main`, which turns it into ``error: <message>`` on stderr and exit 2.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from dataclasses import dataclass
from typing import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; its message names the problem and the fix.

    Every process of a multi-process run meets the same bad input, so only the main one prints it;
    ``every_process`` errors concern a process's own files (its part of a checkpoint) and are
    printed by each process that meets them, with its rank.
    """

    every_process = False


class ProcessFileError(UserError):
    """A file that this process itself reads or writes (its part of a checkpoint) failed."""

    every_process = True


class Stopped(Exception):
    """The run was asked to stop (SIGTERM, SIGUSR1: a pre-emption or a time limit) and checkpointed first."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # as if killed by that signal, which is what schedulers expect


@dataclass(frozen=True)
class Words:
    """How the command the user typed names what the stages' messages speak of: a message says what the user can
    type, so ``distill-run`` never advises ``--output-dir`` or ``--resume``, flags it does not have."""

    run_dir: str = "--output-dir"  # the option that chose a run's directory
    resume: str = "pass --resume"  # how to continue a stopped run


DISTILL_RUN = Words(run_dir="--runs-dir", resume="run the same distill-run command again")
_WORDS: contextvars.ContextVar[Words] = contextvars.ContextVar("words", default=Words())


def words() -> Words:
    """The words of the command running now (the stage commands' own unless inside :func:`speaking`)."""
    return _WORDS.get()


@contextlib.contextmanager
def speaking(chosen: Words):
    """Within the block, messages use ``chosen`` words (distill-run wraps its stages in it)."""
    token = _WORDS.set(chosen)
    try:
        yield
    finally:
        _WORDS.reset(token)


def warn(message: str) -> None:
    """One ``warning:`` line on stderr: something the user may not have meant, which the run goes on with."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def leave_process_group() -> None:
    """Destroy the process group of a multi-process run that ended cleanly (a no-op in one process).

    Left to the interpreter's teardown, gloo's worker threads can abort a process that has finished its work
    (SIGABRT, "terminate called without an active exception"; pytorch/pytorch#179291), and its peers then wait
    for it forever: a two-node CPU run hung so. Only after success: after an error another process may still be
    inside a collective, and destroying the group would wait on it.
    """
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _is_main_process() -> bool:
    # torchrun / accelerate launch set RANK; every process meets the same bad input, one of them says so.
    return os.environ.get("RANK", "0") == "0"


def cli_main(main: Callable[[], object]) -> None:
    """Run an entry point's ``main`` and map a :class:`UserError` to one line and exit code 2.

    With several processes only the main one prints the line; all exit with code 2. After a clean run the
    process group is destroyed (:func:`leave_process_group`).
    """
    try:
        main()
        leave_process_group()
    except UserError as err:
        if _is_main_process():
            print(f"error: {err}", file=sys.stderr, flush=True)
        elif err.every_process:
            print(f"error: [rank {os.environ.get('RANK')}] {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except Stopped as stop:
        if _is_main_process():
            print(f"stopped: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:  # outside a training loop (caching, export, a report), which says it itself
        if _is_main_process():
            print(
                "stopped: interrupted; every file is written whole or not at all, so nothing is half-written: run the "
                "same command again",
                file=sys.stderr,
                flush=True,
            )
        sys.exit(130)
