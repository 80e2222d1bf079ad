"""Run directories: what a run writes so that it can be resumed, exported and reproduced.

``runs/<name>/`` holds ``recipe.yaml`` (resolved), ``run.json`` (git commit, seed, command, device),
``metrics.jsonl`` (one line per epoch), ``state/`` (Accelerate state for ``--resume``),
``model.safetensors`` (the evaluated weights) and, once finished, ``test_predictions.npy`` (the classes the final
evaluation predicted, which a report reads instead of predicting again) and ``summary.json``. Every file is
written to a temporary name and renamed, so a kill never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from accelerate import Accelerator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from distill.data import Split
from distill.errors import ProcessFileError, UserError, words
from distill.failpoints import failpoint
from distill.files import check_writable, sha256_file, swap_in, to_json, write_atomic, write_json
from distill.models import create_model
from distill.recipe import Recipe, dump_recipe, flat_fields, load_recipe

WEIGHTS = "model.safetensors"
STATE, STATE_TMP, STATE_OLD = "state", "state.tmp", "state.old"
PROGRESS = "progress.json"  # written last into a checkpoint: {epoch, step, wall_seconds, test_acc}
ROUND = "round.json"  # a round of distill-run --rounds: who taught its student, how many predictions it changed
EMA_WEIGHTS = "ema.safetensors"
HARDNESS = "hardness.safetensors"  # each image's recorded loss, when train.select_fraction < 1
TEST_PREDICTIONS = "test_predictions.npy"  # the final evaluation's predicted classes, in the test set's order


def git_commit() -> str | None:
    """The checkout's commit; outside a git checkout (a copied tree), ``$DISTILL_COMMIT`` if set."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("DISTILL_COMMIT")


# May change between the start and the resume of a run: where the data is (clusters stage it per job).
RESUMABLE_CHANGES = ("data.dir", "data.download")


def resume_fix() -> str:
    return (f"leave out --recipe and overrides to resume with the run's own recipe.yaml, or start a new "
            f"{words().run_dir}")  # fmt: skip


def check_same_recipe(run_dir: Path, recipe: Recipe, fix: str | None = None, what: str = "--resume with") -> None:
    """On --resume, the recipe must be the one the run started with (data location aside); ``fix`` and
    ``what`` word the refusal for the command at hand."""
    started = flat_fields(load_recipe(run_dir / "recipe.yaml").to_dict())
    now = flat_fields(recipe.to_dict())
    changed = [
        k for k in sorted(set(started) | set(now)) if k not in RESUMABLE_CHANGES and started.get(k) != now.get(k)
    ]
    if changed:
        diff = ", ".join(f"{k}: {started.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise UserError(f"{what} a recipe other than the one {run_dir} started with ({diff}); {fix or resume_fix()}")


def check_run_dir(run_dir: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that is finished, absent or from another recipe.

    Writes nothing, so a refused run leaves the disk as it was.
    """
    run_dir = Path(run_dir)
    has_state = (run_dir / STATE).is_dir()
    if resume:
        if (run_dir / "summary.json").is_file():
            raise UserError(f"run {run_dir} already finished (summary.json exists); nothing to resume")
        if not has_state:
            raise UserError(f"nothing to resume in {run_dir} (no state/ checkpoint); run without --resume")
        check_same_recipe(run_dir, recipe)
    elif has_state or (run_dir / "summary.json").is_file():
        raise UserError(
            f"{run_dir} already holds a run; {words().resume} to continue it, or choose another {words().run_dir}"
        )


def begin_run(run_dir: Path, recipe: Recipe, resume: bool, is_main: bool) -> None:
    """Create the run dir (proving it writable) and, for a new run, write its resolved recipe."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    if is_main and not resume:
        write_atomic(run_dir / "recipe.yaml", dump_recipe(recipe))
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)


def recover_state(run_dir: Path) -> None:
    """Finish or undo a checkpoint swap that a kill interrupted (see :func:`save_checkpoint`).

    ``state.tmp`` counts only once its ``progress.json`` exists (written last); a half-written one is
    dropped, and ``state.old`` is used only when no ``state/`` survived.
    """
    state, tmp, old = (run_dir / name for name in (STATE, STATE_TMP, STATE_OLD))
    if not state.is_dir():
        if (tmp / PROGRESS).is_file():
            tmp.rename(state)
        elif (old / PROGRESS).is_file():
            old.rename(state)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, run_dir: Path, progress: dict, ema=None, hardness=None) -> None:
    """Accelerate state (+ EMA weights, + the images' recorded losses) into ``state.tmp``, then swap it in: a kill
    leaves one complete state.

    ``progress.json`` is written last, so a ``state.tmp`` without it is known to be incomplete.
    A write error (disk full) removes ``state.tmp`` and is a UserError; ``state/`` stays as it was.
    """
    state, tmp, old = (run_dir / name for name in (STATE, STATE_TMP, STATE_OLD))
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        failpoint("checkpoint.save")
        accelerator.save_state(str(tmp))
        # Every process writes its own RNG file and save_state does not wait for the others: wait here,
        # or the main process could swap state.tmp in before another process's part of it is written.
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if ema is not None:
                save_weights(ema.module, tmp / EMA_WEIGHTS)
            if hardness is not None:
                save_file(hardness.state_dict(), str(tmp / HARDNESS))
            write_json(tmp / PROGRESS, progress)
    except (OSError, RuntimeError, SafetensorError) as err:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise ProcessFileError(
            f"cannot write the checkpoint in {tmp} ({_first_line(err)}); free disk space, then {words().resume} to "
            f"continue from the last complete checkpoint"
        ) from None
    if accelerator.is_main_process:
        failpoint("checkpoint.staged")
        swap_in(tmp, state, old, "checkpoint.swap")
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, run_dir: Path, ema=None, hardness=None) -> dict:
    """Restore model, optimiser and RNG state from ``state/``; returns its progress record.

    Accelerate reads its pickles with ``torch.load(weights_only=True)``, so a crafted file that would
    run code is refused; EMA weights come from safetensors (never from a pickle).
    """
    state = run_dir / STATE
    try:
        accelerator.load_state(str(state))
        if ema is not None:
            ema.module.load_state_dict(load_file(str(state / EMA_WEIGHTS)))
        if hardness is not None:
            hardness.load_state_dict(load_file(str(state / HARDNESS), device="cpu"))
        return json.loads((state / PROGRESS).read_text())
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, KeyError, SafetensorError) as err:
        raise ProcessFileError(
            f"checkpoint {state} cannot be loaded safely ({_first_line(err)}); restore it, or start the run "
            f"again in a new {words().run_dir}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def run_info(
    recipe: Recipe,
    device: str,
    role: str,
    train: Split,
    val: Split | None,
    teacher_cache: str | Path | None = None,
    unlabeled: Split | None = None,
    teacher_cache_key: str | None = None,
) -> dict:
    return {
        "role": role,
        "teacher_cache": str(Path(teacher_cache).resolve()) if teacher_cache else None,
        "teacher_cache_key": teacher_cache_key,  # what the cache held (LogitCache.key), wherever it lies
        "recipe": recipe.name,
        "seed": recipe.seed,
        "data": {
            "train_fingerprint": train.fingerprint(),
            "train_images": len(train),
            "val_size": recipe.data.val_size,
            "val_seed": recipe.data.val_seed,
            "val_fingerprint": val.fingerprint() if val is not None else None,
            "train_on_test": recipe.data.train_on_test,
            "unlabeled_fingerprint": unlabeled.fingerprint() if unlabeled is not None else None,
            "unlabeled_images": len(unlabeled) if unlabeled is not None else 0,
        },
        "commit": git_commit(),
        "device": device,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def check_same_data(run_dir: Path, train: Split, unlabeled: Split | None = None) -> None:
    """On --resume, the training images (and the transfer set) must be the ones the run started with (their
    place may change)."""
    data = started_with(run_dir, "data") or {}
    started = data.get("train_fingerprint")
    if started is not None and started != train.fingerprint():
        raise UserError(
            f"--resume with other training data than {run_dir} started with (fingerprint {started[:12]}, now "
            f"{train.fingerprint()[:12]}); point --data-dir at the data the run started with, or start a new "
            f"{words().run_dir}"
        )
    now = unlabeled.fingerprint() if unlabeled is not None else None
    if "unlabeled_fingerprint" in data and data["unlabeled_fingerprint"] != now:
        raise UserError(
            f"--resume with another transfer set (kd.unlabeled) than {run_dir} started with; give the files it "
            f"started with, or start a new {words().run_dir}"
        )


def rewrite_metrics(run_dir: Path, upto_epoch: int) -> None:
    """On resume, keep metrics.jsonl lines of checkpointed epochs only, so each epoch appears once."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        kept = []
        for ln in path.read_text().splitlines():
            try:
                if json.loads(ln)["epoch"] <= upto_epoch:
                    kept.append(ln)
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line cut short by a kill
        write_atomic(path, "".join(ln + "\n" for ln in kept))


def append_metrics(run_dir: Path, line: dict) -> None:
    path = run_dir / "metrics.jsonl"
    text = to_json(line, path, indent=None) + "\n"
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as err:
        raise UserError(
            f"cannot write {path} ({err.strerror or err}); free disk space, then {words().resume} to continue from "
            f"the last checkpoint"
        ) from None


def started_with(run_dir: Path, key: str):
    """A field of the run's ``run.json`` (what it was started with), or None."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text()).get(key)
    except (OSError, json.JSONDecodeError):
        return None


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(state, str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"cannot write {path} ({err.strerror or err}); free disk space or choose another {words().run_dir}"
        ) from None


def save_test_predictions(run_dir: Path, classes: np.ndarray, test_fingerprint: str, tta: dict) -> dict:
    """Write the classes the final evaluation predicted beside the weights (already written); returns the summary's
    record of what they belong to: these weights (their sha256), these test images and labels, this TTA."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(classes, dtype=np.int16), allow_pickle=False)
    write_atomic(run_dir / TEST_PREDICTIONS, buffer.getvalue())
    return {"file": TEST_PREDICTIONS, "count": len(classes), "test_fingerprint": test_fingerprint, "tta": tta,
            "weights_sha256": sha256_file(run_dir / WEIGHTS)}  # fmt: skip


def stored_test_predictions(run_dir: Path, summary: dict, test: Split, tta: dict) -> np.ndarray | None:
    """The classes a finished run's final evaluation predicted for ``test``, when its summary's record says they
    belong to the weights on disk, to these very images and labels and to ``tta``; else None (predict them)."""
    record, weights, path = summary.get("test_predictions") or {}, run_dir / WEIGHTS, run_dir / TEST_PREDICTIONS
    if (record.get("test_fingerprint"), record.get("tta"), record.get("count")) != (test.fingerprint(), tta, len(test)):
        return None
    if not (path.is_file() and weights.is_file()) or record.get("weights_sha256") != sha256_file(weights):
        return None
    try:
        classes = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if classes.shape != (len(test),) or classes.dtype.kind not in "iu" or ((classes < 0) | (classes > 9)).any():
        return None
    return classes.astype(np.int64)


def check_weights(run_dir: Path, again: str) -> None:
    """A finished run's weights must be readable whole (a truncated or overwritten file is refused, with ``again``,
    what to run after moving the run aside); reads only the safetensors header, which covers the whole file."""
    try:
        with safe_open(str(Path(run_dir) / WEIGHTS), "pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise UserError(
            f"{run_dir} is finished but its {WEIGHTS} is damaged ({_first_line(err)}); move {run_dir} aside (or delete "
            f"it) and {again} to train it again"
        ) from None


def load_run(run_dir: str | Path) -> tuple[Recipe, torch.nn.Module]:
    """Rebuild a finished run's model from its ``recipe.yaml`` and ``model.safetensors`` (never pickle)."""
    run_dir = Path(run_dir)
    recipe_file, weights = run_dir / "recipe.yaml", run_dir / WEIGHTS
    if not recipe_file.is_file() or not weights.is_file():
        members = sorted(p for p in run_dir.glob("seed*") if (p / "recipe.yaml").is_file())
        if members:  # train_teacher.py --seeds N's directory: the runs are its members
            raise UserError(
                f"{run_dir} is the directory of an ensemble of {len(members)} ({', '.join(p.name for p in members)}), "
                f"not one run; give its members: "
                + " ".join(f"--teacher {p}" for p in members)
                + " (to a command that takes one run, one of them)"
            )
        raise UserError(f"{run_dir} is not a finished run (needs recipe.yaml and {WEIGHTS}); train it first")
    recipe = load_recipe(recipe_file)
    model = create_model(recipe.model.name, recipe.model.kwargs)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise UserError(
            f"{weights} does not fit model '{recipe.model.name}' ({_first_line(err)}); retrain or restore the file"
        ) from None
    return recipe, model.eval()
