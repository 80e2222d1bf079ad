"""The one driver of the prepared device runs: a plan's steps are data (``bench/plans/<plan>.yaml``).

    DISTILL_COMMIT=<commit> PYTHONPATH=. timeout 540 python -m bench.device PLAN DATA_DIR OUT_DIR   # the device
    SMOKE=1 PYTHONPATH=. python -m bench.device PLAN DATA_DIR /tmp/rehearsal    # its rehearsal on a CPU
    python -m bench.device --list                                               # each plan and what it measures

Stage the data first (../shared/data/cifar10/README.md: two calls back to back), then run one plan in one call.
A plan is a mapping:

- ``measures``: what it measures, in order of importance (``--list`` prints it);
- ``work`` (default work dir, ``$W`` overrides it), ``budget`` (seconds, default 500), ``baseline`` (the step
  the table compares the others with), ``vars`` (named strings for the steps' ``{name}`` fields);
- ``prepare``: shell commands run first; ``steps``: each a ``name``, a time ``limit`` in seconds and either
  ``args`` for ``bench/bench.py`` (``sets``: a list of overrides, each given as ``--student-set``; ``each``: a
  list that repeats the step once per item, as ``{each}``) or a ``command`` to run as it is; ``finish``: shell
  commands run last (the tables). A ``command`` step gets the rehearsal's overrides where it says ``{smoke}`` (or
  ``{smoke_student}``, with the student's tiny net; ``{smoke_data}``, the data's and schedule's alone), which are
  empty on the device; ``smoke_vars`` replace ``vars`` in a rehearsal (e.g. the smoke recipes for distill-run).

``{data}``, ``{out}`` and ``{work}`` are the call's; a step whose limit would end past the budget is skipped and
named in ``OUT/skipped.txt``, one that fails or runs over its limit is named in ``OUT/failed.txt``, and the rest
go on. Each bench.py step writes ``OUT/<name>.json`` and ``WORK/<name>/``. With ``SMOKE=1`` every bench.py step
runs on tiny nets and data (``SMOKE_EXTRA``, and ``SMOKE_STUDENT`` for the student), each limit x 10, no budget.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

PLANS = Path(__file__).parent / "plans"
SMOKE_DATA = ["data.train_limit=300", "data.test_limit=200", "train.epochs=2", "train.batch_size=50",
              "train.eval_batch_size=100", "cache.views=2", "cache.batch_size=100"]  # fmt: skip
SMOKE_NET, SMOKE_STUDENT_NET = "model.name=cifar_air_tiny", "model.name=cifar_resnet_tiny"
SMOKE_EXTRA = [*SMOKE_DATA, SMOKE_NET]
SMOKE_STUDENT = ["--student-set", SMOKE_STUDENT_NET]
EPOCH_LINE = re.compile(r"^epoch \d+/")


def load_plan(name: str) -> dict:
    """Plan ``name`` of bench/plans/, or the plan file at path ``name`` (``*.yaml``)."""
    path = Path(name) if name.endswith(".yaml") else PLANS / f"{name}.yaml"
    if not path.is_file():
        sys.exit(f"no plan {name!r}: choose one of {', '.join(sorted(p.stem for p in PLANS.glob('*.yaml')))}")
    return yaml.safe_load(path.read_text())


def fields(plan: dict, data: str, out: str, work: str, smoke: bool = False) -> dict[str, str]:
    """What a plan's ``{name}`` fields are in one call: ``data``, ``out``, ``work``, ``smoke`` (the rehearsal's
    overrides for a ``command`` step, empty on the device; ``smoke_student`` with the student's tiny net) and the
    plan's ``vars``."""

    def tiny(*net: str) -> str:  # the rehearsal's overrides (none on the device)
        return " ".join([*SMOKE_DATA, *net]) if smoke else ""

    given = {"data": data, "out": out, "work": work, "smoke": tiny(SMOKE_NET),
             "smoke_student": tiny(SMOKE_STUDENT_NET), "smoke_data": tiny()}  # fmt: skip
    named = (plan.get("vars") or {}) | ((plan.get("smoke_vars") or {}) if smoke else {})
    for k, v in named.items():  # in order: a var may name the ones before it
        given[k] = str(v).format(**given)
    return given


def expand(plan: dict, fields: dict) -> list[dict]:
    """The plan's steps, one per ``each`` item, with their fields filled in (``{data}``, ``{out}``, ``{work}``,
    the plan's ``vars``)."""
    fill = lambda text, more={}: text.format(**fields, **more)  # noqa: E731
    steps = []
    for step in plan["steps"]:
        for item in step.get("each", [None]):
            more = {"each": item} if item is not None else {}
            one = {"name": fill(step["name"], more), "limit": int(step["limit"])}
            if "command" in step:
                one["command"] = fill(step["command"], more)
            else:
                args = shlex.split(fill(step["args"], more))
                for override in step.get("sets", []):
                    args += ["--student-set", fill(override, more)]
                one["args"] = args
            steps.append(one)
    return steps


def run_quiet(command: list[str] | str, limit: float) -> int:
    """Run ``command`` (a list, or a shell string) for at most ``limit`` seconds, its per-epoch lines dropped;
    returns its exit status (124 when it ran over)."""
    proc = subprocess.Popen(command, shell=isinstance(command, str), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    _RUNNING[:] = [proc]
    deadline = time.monotonic() + limit
    timer = _Killer(proc, deadline)
    for line in proc.stdout:
        if not EPOCH_LINE.match(line):
            print(line, end="", flush=True)
    proc.wait()
    timer.cancel()
    return 124 if timer.fired else proc.returncode


class _Killer:
    """Kills ``proc``'s whole process group at ``deadline`` (what ``timeout`` does for a shell script)."""

    def __init__(self, proc: subprocess.Popen, deadline: float):
        import threading

        self.fired = False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0), self._kill, args=(proc,))
        self._timer.daemon = True
        self._timer.start()

    def _kill(self, proc):
        self.fired = True
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass

    def cancel(self):
        self._timer.cancel()


_RUNNING: list[subprocess.Popen] = []  # the step now running: its own process group, not killed with ours


def _stop(signum, frame) -> None:
    """SIGTERM or SIGINT (``timeout``, Ctrl-C, the device's limit): end the running step's whole group too, then
    exit as the signal would, so no step goes on training after the driver has gone."""
    for proc in _RUNNING:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
    sys.exit(128 + signum)


def note(path: Path, line: str) -> None:
    print(line, flush=True)
    with path.open("a") as f:
        f.write(line + "\n")


def run_plan(name: str, data: str, out: Path, smoke: bool = False, work: str | None = None) -> int:
    """Run plan ``name`` into ``out``: prepare, each step within the budget, finish; returns the failures' count."""
    plan = load_plan(name)
    work = work or os.environ.get("W") or plan.get("work", f"/tmp/{name}")
    filled = fields(plan, data, str(out), work, smoke)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    Path(work).mkdir(parents=True)
    slow, budget = (10, float("inf")) if smoke else (1, float(plan.get("budget", 500)))
    gpu = subprocess.run("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader",
                         shell=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    (out / "gpu.txt").write_text(gpu + "\n")
    commit = (
        os.environ.get("DISTILL_COMMIT")
        or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    )
    (out / "commit.txt").write_text(commit + "\n")
    print(f"== plan {name}: {gpu or 'no GPU'}, commit {commit or '?'}, work {work}", flush=True)
    start, failed = time.monotonic(), 0
    for command in plan.get("prepare", []):
        if run_quiet(command.format(**filled), 600 * slow):
            failed += 1
            note(out / "failed.txt", f"prepare: {command}")
    for step in expand(plan, filled):
        used, limit = time.monotonic() - start, step["limit"] * slow
        if used + limit > budget:
            note(out / "skipped.txt", f"{step['name']} (at {used:.0f}s, limit {limit}s)")
            continue
        if "command" in step:
            command = step["command"]
        else:
            # a rehearsal drops the student recipe's own model kwargs (widths: a tiny net must stay tiny), not the step's
            first = ["--student-set", "model.kwargs={}"] if smoke else []
            command = [sys.executable, "bench/bench.py", "--data-dir", data, "--json", str(out / f"{step['name']}.json"),
                       "--work-dir", f"{work}/{step['name']}", *first, *step["args"], "data.download=false"]  # fmt: skip
            if smoke:
                command += [*SMOKE_EXTRA, *SMOKE_STUDENT]
        print(f"== {step['name']} (at {used:.0f}s): {command if isinstance(command, str) else shlex.join(command[1:])}")
        rc = run_quiet(command, limit)
        if rc:
            failed += 1
            note(out / "failed.txt", f"{step['name']}: exit {rc} (124: over its {limit}s limit)")
    print(f"== steps done at {time.monotonic() - start:.0f}s", flush=True)
    for command in plan.get("finish", []):
        if run_quiet(command.format(**filled), 120 * slow):
            failed += 1
            note(out / "failed.txt", f"finish: {command}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a prepared device plan (bench/plans/PLAN.yaml).")
    parser.add_argument("plan", nargs="?")
    parser.add_argument("data_dir", nargs="?", help="holds cifar-10-batches-py/")
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path("bench_out"))
    parser.add_argument("--list", action="store_true", help="each plan and what it measures")
    args = parser.parse_args(argv)
    if args.list or not args.plan:
        for path in sorted(PLANS.glob("*.yaml")):
            print(f"{path.stem}:\n  " + yaml.safe_load(path.read_text())["measures"].strip().replace("\n", "\n  "))
        return 0
    if not args.data_dir:
        parser.error("give DATA_DIR (it holds cifar-10-batches-py/)")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return 1 if run_plan(args.plan, args.data_dir, args.out_dir, smoke=bool(os.environ.get("SMOKE"))) else 0


if __name__ == "__main__":
    sys.exit(main())
