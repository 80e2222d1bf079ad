"""distill-run --rounds: self-training, round k + 1 distilling from round k's student on the same transfer set."""

import csv
import json
import os
import subprocess
import sys

import pytest

from distill import paper, run
from distill.errors import UserError
from distill.files import sha256_file
from distill.logit_cache import LogitCache
from distill.runs import WEIGHTS
from tests.conftest import ROOT, tiny


def argv(tmp_path, test_pkl, synthetic_dir, *extra):
    return ["--student-recipe", "kd_smoke", "--test-pkl", str(test_pkl), "--out", str(tmp_path / "sub.csv"),
            "--runs-dir", str(tmp_path / "runs"), "--unlabeled", str(test_pkl), *tiny(synthetic_dir, *extra)]  # fmt: skip


@pytest.mark.slow  # two rounds of the smoke pipeline with its report: ~40 s
def test_two_rounds_each_taught_by_the_one_before_and_skipped_once_done(
    tmp_path, test_pkl, synthetic_dir, capsys, monkeypatch
):
    run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "2", "--min-change", "0"])
    said = capsys.readouterr().out
    runs = tmp_path / "runs"
    first, second = runs / "kd_smoke", runs / "kd_smoke-round2"
    assert "distill-run: round 2 cache: build " in said and "distill-run: round 2 student: train " in said
    # round 2's cache holds round 1's student's logits, on the same transfer set; its student started from it
    cache = LogitCache.load(first / "cache-round2")
    assert [t["weights_sha256"] for t in cache.meta["teachers"]] == [sha256_file(first / WEIGHTS)]
    assert cache.meta["unlabeled"]["num_images"] == 50
    summary = json.loads((second / "summary.json").read_text())
    assert summary["teacher_cache"] == str(first / "cache-round2")
    assert (second / "recipe.yaml").read_text().startswith("name: kd_smoke\nseed: 1\n")  # a fresh initialisation
    for k, (d, taught) in enumerate([(first, runs / "teacher_smoke"), (second, first)], 1):
        record = json.loads((d / run.ROUND).read_text())
        assert record["round"] == k and record["images"] == "transfer-set" and record["count"] == 50
        assert [t["run_dir"] for t in record["taught_by"]] == [str(taught.resolve())]
        assert 0 <= record["changed"] <= 50 and record["agreement"] == pytest.approx(1 - record["changed"] / 50)
        assert f"distill-run: round {k} (taught by {taught.name}) changed {record['changed']:,} of" in said
    report = (second / "report" / "report.md").read_text()
    assert "## kd_smoke\n" in report and "## kd_smoke-round2\n" in report
    assert "Round 2 of self-training (`distill-run --rounds`): taught by kd_smoke; it changed" in report
    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    paper.paper([second, runs / "teacher_smoke", first], out=tmp_path / "paper", repo="https://example.org/x",
                data_dir=str(synthetic_dir))  # fmt: skip
    tex = (tmp_path / "paper" / "main.tex").read_text()
    assert (
        "It is round 2 of self-training: it learns by knowledge distillation \\citep{hinton2015kd} from kd\\_smoke,"
        in tex
    )
    rows = list(csv.reader((tmp_path / "sub.csv").open()))
    assert len(rows) == 51
    first_csv = (tmp_path / "sub.csv").read_bytes()
    # again: every round is done, so every stage is skipped and the CSV is the same
    run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "2", "--min-change", "0"])
    said = capsys.readouterr().out
    for line in ("round 2 cache: reuse", "round 2 student: reuse", "report: leave"):
        assert f"distill-run: {line} " in said, said
    assert (tmp_path / "sub.csv").read_bytes() == first_csv


def test_the_dry_run_shows_every_round_and_bad_rounds_are_refused(tmp_path, test_pkl, synthetic_dir, capsys):
    plan = run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "3", "--dry-run"])["plan"]
    assert [(s["name"], s["round"], s["action"]) for s in plan] == [
        ("teacher", 1, "train"), ("cache", 1, "build"), ("student", 1, "train"),
        ("cache", 2, "build"), ("student", 2, "train"), ("cache", 3, "build"), ("student", 3, "train"),
        ("report", 1, "write"), ("csv", 1, "write"),
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "would round 3 student: train " in out and "round 3 about" in out
    assert plan[-2]["path"].endswith("kd_smoke-round3/report")
    ensemble = run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "2", "--round-teachers", "ensemble",
                         "--dry-run"])["plan"]  # fmt: skip
    assert ensemble[3]["path"].endswith("kd_smoke/cache-round2-ensemble")
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    with pytest.raises(UserError, match="--rounds 2 needs a student that distils"):
        run.main([*argv(tmp_path, test_pkl, synthetic_dir, "kd.alpha=0"), "--rounds", "2"])
    with pytest.raises(UserError, match="--rounds 0: give 1"):
        run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "0"])
    with pytest.raises(UserError, match="--min-change 1.5"):
        run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "2", "--min-change", "1.5"])


@pytest.mark.slow  # a round of the smoke pipeline with its report: ~20 s
def test_a_round_that_changes_too_little_ends_the_rounds(tmp_path, test_pkl, synthetic_dir, capsys):
    """With --min-change 1 every round changes too little: round 1 is the last, and says why; the plan of the same
    command then stops there too."""
    run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "3", "--min-change", "0.999"])
    said = capsys.readouterr().out
    assert "stopping after round 1: it changed fewer than 99.9% of its teachers' predictions" in said
    assert not (tmp_path / "runs" / "kd_smoke-round2").exists()
    assert (tmp_path / "runs" / "kd_smoke" / "report" / "report.md").is_file()
    plan = run.main([*argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "3", "--min-change", "0.999",
                     "--dry-run"])["plan"]  # fmt: skip
    assert max(s["round"] for s in plan) == 1
    assert "rounds: 1 of 3; round 1 (taught by teacher_smoke) changed" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_between_rounds_the_same_command_goes_on_from_round_2(tmp_path, test_pkl, synthetic_dir):
    """SIGKILL while round 2's cache is being written (round 1 done): the same command reuses round 1 and rebuilds
    round 2's cache from scratch."""
    command = [sys.executable, "-m", "distill", *argv(tmp_path, test_pkl, synthetic_dir), "--rounds", "2",
               "--min-change", "0"]  # fmt: skip
    env = os.environ | {"DISTILL_FAILPOINT": "cache.files@2", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    runs = tmp_path / "runs"
    assert (runs / "kd_smoke" / "summary.json").is_file() and not (runs / "kd_smoke-round2").exists()
    env.pop("DISTILL_FAILPOINT")
    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "distill-run: student: reuse " in again.stdout and "round 2 cache: build " in again.stdout
    assert (runs / "kd_smoke-round2" / "summary.json").is_file() and (tmp_path / "sub.csv").is_file()
