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
