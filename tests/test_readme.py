"""README's first screen: every command of its "which command" table parses and plans (``--dry-run``), and every
accuracy in the table is one BENCHMARKS.md records; every link from README and docs/ lands on a file and heading."""

import pickle
import re
import shlex

import numpy as np
import pytest

from distill import run
from tests.conftest import ROOT, tiny


@pytest.fixture()
def test_pkl(tmp_path):
    path = tmp_path / "test.pkl"
    path.write_bytes(pickle.dumps({b"data": np.zeros((300, 32, 32, 3), np.uint8)}))  # --bn-stats test needs 256
    return path


def which_command_rows() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Which command", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| machine")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows if not set(ln) <= set("| -:")]


def test_the_table_has_rows_for_a_gpu_a_cpu_and_a_laptop():
    machines = " ".join(row[0] for row in which_command_rows())
    assert "GPU" in machines and "CPU" in machines and "laptop" in machines


@pytest.mark.parametrize("row", which_command_rows(), ids=lambda r: r[0])
def test_each_command_plans(row, tmp_path, test_pkl, synthetic_dir, capsys):
    command = shlex.split(row[1].strip("`"))
    assert command[0] == "distill-run"
    argv = command[1:]
    argv = [str(test_pkl) if a == "cifar_test_nolabel.pkl" else a for a in argv]  # --test-pkl and --unlabeled
    argv[argv.index("--out") + 1] = str(tmp_path / "submission.csv")
    plan = run.main([*argv, "--runs-dir", str(tmp_path / "runs"), "--dry-run", *tiny(synthetic_dir)])["plan"]
    assert plan[-1]["name"] == "csv" and "estimate on this machine" in capsys.readouterr().out


def test_every_accuracy_in_the_table_is_measured_in_benchmarks():
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    figures = [f for row in which_command_rows() for f in re.findall(r"\d+\.\d+%", " ".join(row[2:4]))]
    assert len(figures) >= 5
    missing = [f for f in figures if f not in benchmarks]
    assert not missing, f"README's table shows {missing}, which BENCHMARKS.md does not record"


def _slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_every_link_lands():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", page.read_text()):
            path, anchor = target
            if path.startswith("http"):
                continue
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name} links to {path}, which does not exist"
            if anchor and file.suffix == ".md":
                heads = {_slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                assert anchor in heads, f"{page.name} links to {path}#{anchor}, which has no such heading"


def test_the_contest_command_is_one_line_in_readme_and_in_help_and_it_plans(tmp_path, synthetic_dir, capsys):
    """The best measured combination, written once in README and once in distill-run --help, the same words."""
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("**The contest command**")]
    assert len(lines) == 1 and f"`{run.CONTEST}`" in lines[0]
    with pytest.raises(SystemExit):
        run.main(["--help"])
    assert " ".join(capsys.readouterr().out.split()).count(run.CONTEST) == 1
    argv = shlex.split(run.CONTEST)[1:]
    pkl = tmp_path / "cifar_test_nolabel.pkl"
    pkl.write_bytes(pickle.dumps({b"data": np.zeros((300, 32, 32, 3), np.uint8)}))  # --bn-stats test needs 256
    argv = [str(pkl) if a == "cifar_test_nolabel.pkl" else a for a in argv]
    argv[argv.index("--out") + 1] = str(tmp_path / "submission.csv")
    plan = run.main([*argv, "--runs-dir", str(tmp_path / "runs"), "--dry-run", *tiny(synthetic_dir)])["plan"]
    assert [s["name"] for s in plan] == ["teacher", "cache", "student", "report", "csv"]
