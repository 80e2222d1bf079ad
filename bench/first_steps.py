"""The loss and training accuracy of a recipe's first steps, one line a step: what shows a blow-up early.

    python -m bench.first_steps --data-dir DIR --recipe kd_fast94_muon --steps 12 [key=value ...]

Sets the run up as training does (labels only, ``kd.alpha=0``), on the first epoch's batches of the real data,
and prints ``step loss accuracy`` for each of the first ``--steps`` optimiser updates. BENCHMARKS.md ("Half the
CPU time") used it to find that airbench94_muon's head LR made the residual student's loss jump to 12 on its
second step.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from distill import engine, trainer
from distill.devices import make_accelerator
from distill.errors import cli_main
from distill.recipe import load_recipe


def first_steps(recipe_name: str, data_dir: str, steps: int, overrides: list[str]) -> list[tuple[float, float]]:
    recipe = load_recipe(recipe_name, ["kd.alpha=0", f"data.dir={data_dir}", "data.download=false", *overrides])
    accelerator = make_accelerator(recipe)
    cfg, out = recipe.train, []
    with tempfile.TemporaryDirectory() as tmp:
        run = trainer._setup(recipe, "student", Path(tmp) / "run", accelerator, False, None)
        try:
            batches = engine.epoch_batches(trainer._epoch_data(run, 0), recipe.augment, cfg.batch_size, recipe.seed,
                                           0, accelerator, cfg.channels_last)  # fmt: skip
            run.forward.train()
            for i, batch in zip(range(steps), batches):
                with accelerator.autocast():
                    logits = run.forward(batch.x)
                loss = run.criterion(logits, batch.y, None)["loss"]
                run.optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                run.optimizer.step()
                run.schedule.step_update(num_updates=i + 1)
                out.append((loss.item(), (logits.argmax(1) == batch.y).float().mean().item()))
                print(f"{i} {out[-1][0]:.3f} {out[-1][1]:.3f}", flush=True)
        finally:
            run.lock.release()
    return out


def main(argv: list[str] | None = None) -> list[tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    return first_steps(args.recipe, args.data_dir, args.steps, args.overrides)


if __name__ == "__main__":
    cli_main(main)
