"""Run directories: what a run writes so that it can be resumed, exported and reproduced.

``runs/<name>/`` holds ``recipe.yaml`` (resolved), ``run.json`` (git commit, seed, command, device),
``metrics.jsonl`` (one line per epoch), ``state/`` (Accelerate state for ``--resume``),
``model.safetensors`` (the evaluated weights) and, once finished, ``summary.json``. Every file is
written to a temporary name and renamed, so a kill never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import students  # noqa: F401  (registers the students with timm)
import teachers  # noqa: F401  (registers the teachers with timm)
from distill.errors import UserError
from distill.recipe import Recipe, dump_recipe, load_recipe

WEIGHTS = "model.safetensors"


def write_atomic(path: Path, data: str | bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"cannot write {path} ({err.strerror or err}); free disk space or choose another --output-dir"
        ) from None


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


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


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and prove a file can be written there, before any work starts."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"output dir {run_dir} cannot be written ({err.strerror or err}); choose another --output-dir"
        ) from None


def start_run(run_dir: Path, recipe: Recipe, resume: bool, is_main: bool) -> None:
    """Check the run dir can hold this run; refuse to overwrite a run unless resuming."""
    run_dir = Path(run_dir)
    has_state = (run_dir / "state").is_dir()
    if resume:
        if (run_dir / "summary.json").is_file():
            raise UserError(f"run {run_dir} already finished (summary.json exists); nothing to resume")
        if not has_state:
            raise UserError(f"nothing to resume in {run_dir} (no state/ checkpoint); run without --resume")
    elif has_state or (run_dir / "summary.json").is_file():
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output-dir")
    check_writable(run_dir)
    if is_main and not resume:
        write_atomic(run_dir / "recipe.yaml", dump_recipe(recipe))
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)


def run_info(recipe: Recipe, device: str, role: str) -> dict:
    return {
        "role": role,
        "recipe": recipe.name,
        "seed": recipe.seed,
        "commit": git_commit(),
        "device": device,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def create_model(recipe: Recipe) -> torch.nn.Module:
    """Build the recipe's model from timm's registry (teachers and students are registered on import)."""
    if not timm.is_model(recipe.model.name):
        known = ", ".join(timm.list_models("cifar_*"))
        raise UserError(f"unknown model.name '{recipe.model.name}'; registered here: {known}")
    return timm.create_model(recipe.model.name, pretrained=False, num_classes=10, **recipe.model.kwargs)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(state, str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"cannot write {path} ({err.strerror or err}); free disk space or choose another --output-dir"
        ) from None


def load_run(run_dir: str | Path) -> tuple[Recipe, torch.nn.Module]:
    """Rebuild a finished run's model from its ``recipe.yaml`` and ``model.safetensors`` (never pickle)."""
    run_dir = Path(run_dir)
    recipe_file, weights = run_dir / "recipe.yaml", run_dir / WEIGHTS
    if not recipe_file.is_file() or not weights.is_file():
        raise UserError(f"{run_dir} is not a finished run (needs recipe.yaml and {WEIGHTS}); train it first")
    recipe = load_recipe(recipe_file)
    model = create_model(recipe)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise UserError(
            f"{weights} does not fit model '{recipe.model.name}' ({str(err).splitlines()[0][:200]}); "
            f"retrain or restore the file"
        ) from None
    return recipe, model.eval()
