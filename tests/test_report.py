"""report.py and the results notebook, on smoke runs made here."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from distill import report, train_student, train_teacher
from tests.conftest import ROOT, tiny


@pytest.fixture(scope="module")
def runs(synthetic_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(root / "teacher"), *tiny(synthetic_dir)])
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(root / "ce"), *tiny(synthetic_dir)])
    train_student.main(
        [
            "--recipe",
            "kd_smoke",
            "--teacher-cache",
            str(root / "teacher" / "cache"),
            "--output-dir",
            str(root / "kd_t4"),
            *tiny(synthetic_dir),
        ]
    )
    return [root / "teacher", root / "ce", root / "kd_t4"]


def test_report_writes_plots_and_table(runs, synthetic_dir, tmp_path):
    path = report.main([*map(str, runs), "--out", str(tmp_path / "rep"), "--data-dir", str(synthetic_dir)])
    text = path.read_text()
    for name in ("curves.png", "confusion_ce.png", "confusion_kd_t4.png", "errors_ce.png", "errors_kd_t4.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 5_000, name
        assert (tmp_path / "rep" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| teacher | teacher_smoke | teacher | 78,042 |" in text
    assert "Agreement with teacher teacher:" in text and "| accuracy |" in text
    summary = json.loads((runs[2] / "summary.json").read_text())
    assert f"Final test accuracy: {100 * summary['test_accuracy']:.2f}%" in text


@pytest.mark.slow
def test_notebook_executes_against_smoke_runs(runs, synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_RUNS", ":".join(map(str, runs)))
    monkeypatch.setenv("DISTILL_REPORT_DIR", str(tmp_path / "nb_report"))
    monkeypatch.setenv("DISTILL_DATA_DIR", str(synthetic_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    import pickle

    from distill.data import load_cifar10

    scored = tmp_path / "scored.pkl"  # the inspect cell's pickle: the synthetic test images, darkened
    images = (load_cifar10(synthetic_dir, download=False)[1].images * 0.6).astype("uint8")
    scored.write_bytes(pickle.dumps({"data": images, "ids": list(range(len(images)))}))
    monkeypatch.setenv("DISTILL_TEST_PKL", str(scored))
    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook with outputs cleared"
    )
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # curves, confusion matrix, error grid, the scored set's statistics and model view
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Final test accuracy:" in text and "Trainable parameters: 19954" in text
    assert (tmp_path / "nb_report" / "curves.png").is_file()
    assert (tmp_path / "nb_report_paper" / "main.tex").is_file()  # the paper cell
    assert "darker" in text or "darker" in "".join(str(o.get("data", {})) for o in outputs)  # the inspect cell
    assert (tmp_path / "nb_report_inspect" / "inspect.json").is_file()


def test_report_adds_each_students_shift_suite(runs, synthetic_dir, tmp_path):
    import numpy as np

    from tests.conftest import synthetic_split

    split = synthetic_split(20, 4)
    np.savez(tmp_path / "cifar102_test.npz", images=split.images, labels=split.labels)
    args = [*map(str, runs[1:]), "--out", str(tmp_path / "rep"), "--data-dir", str(synthetic_dir), "--suite", "shift"]
    text = report.main([*args, "--images", "16", "--natural", str(tmp_path / "cifar102_test.npz")]).read_text()
    assert "### ce under shift (no TTA)" in text and "| mean corruption accuracy |" in text
    assert "| cifar102_test.npz |" in text and (tmp_path / "rep" / "shift_ce.png").is_file()
    saved = {name: json.loads((tmp_path / "rep" / f"shift_{name}.json").read_text()) for name in ("ce", "kd_t4")}
    assert len(saved["ce"]["corruptions"]) == 12 and saved["ce"]["images"] == 16

    # The comparison opens the report: one row per student, its numbers those of its shift_<run>.json.
    head = ["run", "augmentation", "final test accuracy", "clean", "noise", "blur", "weather", "digital"]
    assert "| " + " | ".join([*head, "mean corruption", "drop", "cifar102_test.npz"]) + " |" in text
    assert text.index("## Under shift") < text.index("## ce")
    for name, shift in saved.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} | translate "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == len(head) + 3
        assert cells[3] == f"{100 * shift['clean']:.2f}%"
        assert cells[8] == f"**{100 * shift['mean_corruption_accuracy']:.2f}%**"
        noise = [a for c in ("gaussian_noise", "shot_noise", "impulse_noise") for a in shift["corruptions"][c].values()]
        assert cells[4] == f"{100 * sum(noise) / 15:.2f}%"
        assert cells[10] == f"{100 * shift['natural']['cifar102_test.npz']:.2f}%"


def test_runs_scored_on_different_test_sets_are_not_compared(runs, synthetic_dir, tmp_path):
    import shutil

    from distill.errors import UserError

    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    summary = json.loads((other / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "test_images": 50}))
    with pytest.raises(
        UserError, match=r"scored on different test sets \(teacher 200 and ce 200 and other 50 images\)"
    ):
        report.main([*map(str, runs[:2]), str(other), "--out", str(tmp_path / "rep"), "--data-dir", str(synthetic_dir)])
    assert not (tmp_path / "rep").exists()


def test_the_final_evaluations_classes_are_stored_and_read_back(runs, synthetic_dir, monkeypatch, tmp_path):
    """Each run keeps the classes its final evaluation predicted; they are what predicting again gives, their
    accuracy is the summary's, and the report reads them instead of predicting the test set a second time."""
    import numpy as np

    from distill.compute import Compute
    from distill.data import load_cifar10
    from distill.engine import predict
    from distill.runs import load_run, stored_test_predictions

    _, test = load_cifar10(synthetic_dir, download=False)
    for run_dir in runs:
        summary = json.loads((run_dir / "summary.json").read_text())
        recipe, model = load_run(run_dir)
        test_part = test.head(recipe.data.test_limit)
        stored = stored_test_predictions(run_dir, summary, test_part, recipe.tta.to_dict())
        assert stored is not None and stored.shape == (summary["test_images"],), run_dir.name
        again = predict(model, test_part.images, recipe.tta, compute=Compute.resolve(recipe.train.mixed_precision))
        assert np.array_equal(stored, again), run_dir.name
        assert float(np.mean(stored == test_part.labels)) == pytest.approx(summary["test_accuracy"], abs=1e-12)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the report predicted the test set again")

    monkeypatch.setattr(report, "predict", no_second_pass)
    path = report.main([*map(str, runs), "--out", str(tmp_path / "rep"), "--data-dir", str(synthetic_dir)])
    assert "Agreement with teacher teacher:" in path.read_text()


def test_stored_classes_that_do_not_fit_are_predicted_again(runs, synthetic_dir, tmp_path, monkeypatch):
    """Other weights, other test images, another TTA, or a damaged file: the stored classes are not used."""
    import shutil

    import numpy as np
    from safetensors.torch import load_file, save_file

    from distill.data import Split, load_cifar10
    from distill.runs import TEST_PREDICTIONS, WEIGHTS, stored_test_predictions

    _, test = load_cifar10(synthetic_dir, download=False)
    run_dir = tmp_path / "ce"
    shutil.copytree(runs[1], run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    tta = summary["tta"]
    assert stored_test_predictions(run_dir, summary, test, tta) is not None  # the copy as it was written
    assert stored_test_predictions(run_dir, summary, test.head(len(test) - 1), tta) is None  # other images
    flipped = Split(test.images[::-1].copy(), test.labels[::-1].copy())
    assert stored_test_predictions(run_dir, summary, flipped, tta) is None  # same count, other images
    assert stored_test_predictions(run_dir, summary, test, {**tta, "flip": not tta["flip"]}) is None
    assert stored_test_predictions(run_dir, {k: v for k, v in summary.items() if k != "test_predictions"}, test,
                                   tta) is None  # a run written before the classes were kept  # fmt: skip
    (run_dir / TEST_PREDICTIONS).write_bytes(b"not an array")
    assert stored_test_predictions(run_dir, summary, test, tta) is None
    shutil.copy(runs[1] / TEST_PREDICTIONS, run_dir / TEST_PREDICTIONS)
    state = load_file(str(run_dir / WEIGHTS))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 1.0
    save_file(state, str(run_dir / WEIGHTS))  # weights changed after the run: the classes are no longer theirs
    assert stored_test_predictions(run_dir, summary, test, tta) is None
    calls = []
    monkeypatch.setattr(report, "predict", lambda *a, **k: calls.append(k["what"]) or np.zeros(len(test), int))
    report.main([str(run_dir), "--out", str(tmp_path / "rep"), "--data-dir", str(synthetic_dir)])
    assert calls == ["predicting with ce"]


def test_predicted_classes_come_back_in_the_images_order_from_several_processes():
    """Process r predicts images r::world; the gathered classes are put back in the images' order, each once."""
    from contextlib import nullcontext

    import torch

    from distill.augment import MEAN, STD
    from distill.engine import predict_classes

    class Echo(torch.nn.Module):  # the class of each image is its first pixel's value (normalised, then undone)
        def forward(self, x):
            return torch.nn.functional.one_hot((x[:, 0, 0, 0] * STD[0] + MEAN[0]).round().long(), 10).float()

    images = torch.zeros(11, 32, 32, 3, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(11) * 7 % 10
    want = torch.arange(11) * 7 % 10

    class Process:
        def __init__(self, rank, world, parts):
            self.process_index, self.num_processes, self.parts = rank, world, parts

        def autocast(self):
            return nullcontext()

        def gather(self, tensor):
            self.parts[self.process_index] = tensor
            return torch.cat([self.parts.get(r, torch.full_like(tensor, -2)) for r in range(self.num_processes)])

    with torch.no_grad():
        for world in (1, 2, 3, 4):
            parts = {}
            for rank in range(world):  # each process's padded share, as gather would collect them
                predict_classes(Echo(), images, Process(rank, world, parts), 5, channels_last=False)
            for rank in range(world):
                got = predict_classes(Echo(), images, Process(rank, world, parts), 5, channels_last=False)
                assert torch.equal(got, want), (world, rank, got)
