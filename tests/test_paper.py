"""distill-paper: the report as a 4-page AAAI-format paper, every fact from the runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from distill import paper, train_student, train_teacher
from distill.errors import UserError
from distill.models import architecture
from distill.runs import load_run
from tests.conftest import ROOT, tiny

REPO = "https://github.com/example-team/distill"
HAS_TEX = shutil.which("latexmk") is not None or shutil.which("pdflatex") is not None
needs_tex = pytest.mark.skipif(not HAS_TEX, reason="no TeX engine on PATH (.ci/run installs one)")

# What the fallback layout needs from a style, for the --style-dir path: a stand-in for AAAI's aaai24.sty
STAND_IN = paper.FALLBACK_STY.replace("\\ProvidesPackage{aaailike}", "\\ProvidesPackage{aaai24}") + "\\@twocolumntrue\n"


@pytest.fixture(scope="module")
def runs(synthetic_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_runs")
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(root / "teacher"), *tiny(synthetic_dir)])
    kd = ["--recipe", "kd_smoke", "--teacher-cache", str(root / "teacher" / "cache"), "--output-dir", str(root / "kd")]
    train_student.main([*kd, *tiny(synthetic_dir)])
    train_student.main(
        ["--recipe", "ce_smoke", "--output-dir", str(root / "ce"), *tiny(synthetic_dir, "model.name=cifar_resnet_tiny")]
    )
    return root


def write(runs, tmp_path, synthetic_dir, *extra_runs, **kwargs):
    dirs = [runs / "kd", runs / "teacher", runs / "ce", *extra_runs]
    kwargs.setdefault("out", tmp_path / "paper")
    kwargs.setdefault("authors", "Ada Lovelace, Alan Turing")
    return paper.paper(dirs, repo=REPO, data_dir=str(synthetic_dir), **kwargs)


def test_every_fact_in_the_tex_is_the_runs(runs, tmp_path, synthetic_dir, monkeypatch):
    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    result = write(runs, tmp_path, synthetic_dir)
    assert result["pages"] is None
    text = (tmp_path / "paper" / "main.tex").read_text()
    summary = json.loads((runs / "kd" / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}\\%" in text
    assert f"{summary['trainable_params']:,}" in text and REPO in text and "Ada Lovelace, Alan Turing" in text
    teacher = json.loads((runs / "teacher" / "summary.json").read_text())
    assert f"{100 * teacher['test_accuracy']:.2f}\\%" in text
    assert "$T=4$" in text and "$\\alpha=0.5$" in text  # kd_smoke's KD settings, from its recipe.yaml
    assert "Write here:" in text and "\\citep{hinton2015kd}" in text
    bib = (tmp_path / "paper" / "refs.bib").read_text()
    assert "@article{hinton2015kd" in bib and "trivialaugment" not in bib  # only what the recipes used
    for fig in ("curves.pdf", "confusion.pdf", "aaailike.sty"):
        assert (tmp_path / "paper" / fig).is_file()


def test_the_architecture_table_is_the_model(runs, tmp_path, synthetic_dir, monkeypatch):
    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    write(runs, tmp_path, synthetic_dir)
    text = (tmp_path / "paper" / "main.tex").read_text()
    arch = architecture(load_run(runs / "kd")[1])
    assert arch["N"] == 3 and f"$N={arch['N']}$" in text and f"$P={arch['P']}$" in text
    rows = re.findall(r"^(\d+) & (\d+) & (\d+) & (\d)\$\\times\$\d & (identity|\d\$\\times\$\d) & ", text, flags=re.M)
    assert [(int(i), int(b), int(c), int(f)) for i, b, c, f, _ in rows] == [
        (i, layer["blocks"], layer["channels"], layer["conv_kernel"]) for i, layer in enumerate(arch["layers"], 1)
    ]
    assert [k for *_, k in rows] == ["identity" if not la["skip_kernel"] else "1$\\times$1" for la in arch["layers"]]


@pytest.mark.parametrize(
    "case, message",
    [
        ("unfinished", "is not a finished run"),
        ("teacher_first", "is a teacher; give the student's run first"),
        ("no_student", "no student among the runs"),
        ("other_test_set", "were scored on different test sets"),
        ("style_dir_empty", "has no aaai24.sty"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(case, message, runs, tmp_path, synthetic_dir):
    out = tmp_path / "paper"
    dirs = [runs / "kd", runs / "teacher"]
    kwargs = {}
    if case == "unfinished":
        (tmp_path / "half").mkdir()
        dirs = [tmp_path / "half"]
    elif case == "teacher_first":
        dirs = [runs / "teacher", runs / "kd"]
    elif case == "no_student":
        dirs = [runs / "teacher"]
    elif case == "other_test_set":
        other = tmp_path / "other"
        shutil.copytree(runs / "ce", other)
        summary = json.loads((other / "summary.json").read_text())
        (other / "summary.json").write_text(json.dumps({**summary, "test_images": 50}))
        dirs.append(other)
    elif case == "style_dir_empty":
        (tmp_path / "kit").mkdir()
        kwargs["style_dir"] = tmp_path / "kit"
    with pytest.raises(UserError, match=message):
        paper.paper(dirs, out=out, repo=REPO, data_dir=str(synthetic_dir), **kwargs)
    assert not out.exists() and not list(tmp_path.glob(".paper.*"))


@pytest.mark.slow
@needs_tex
@pytest.mark.parametrize("layout", ["fallback", "style-dir"])
def test_the_pdf_compiles_in_4_pages_with_the_facts(layout, runs, tmp_path, synthetic_dir):
    kwargs = {}
    if layout == "style-dir":
        kit = tmp_path / "AuthorKit24"
        kit.mkdir()
        (kit / "aaai24.sty").write_text(STAND_IN)
        kwargs["style_dir"] = kit
    result = write(runs, tmp_path, synthetic_dir, **kwargs)
    pdf = tmp_path / "paper" / "main.pdf"
    assert result["pages"] is not None and 1 <= result["pages"] <= 4 and pdf.is_file()
    assert result["style"] == ("aaai24" if kwargs else "aaailike")
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout.split())
    summary = json.loads((runs / "kd" / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}%" in text and f"{summary['trainable_params']:,}" in text
    assert REPO in text.replace("- ", "-")
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True).stdout.splitlines()
    assert len(images) == 2  # the header lines only: every figure is embedded as vector PDF, none as a raster
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    assert "Type 3" not in fonts
    if layout == "fallback":  # page 1 as README shows it (docs/paper-page1.png comes from the real runs)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")], check=True
        )
        assert (tmp_path / "page-1.png").stat().st_size > 10_000


@pytest.mark.slow
@needs_tex
def test_a_latex_error_names_its_first_line_and_the_log(runs, tmp_path, synthetic_dir):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "aaai24.sty").write_text(STAND_IN + "\\undefinedmacrohere\n")
    with pytest.raises(UserError, match=r"LaTeX failed: Undefined control sequence.*the log is .*paper-latex\.log"):
        write(runs, tmp_path, synthetic_dir, style_dir=kit)
    assert not (tmp_path / "paper").exists() and (tmp_path / "paper-latex.log").is_file()


def test_the_console_script_is_declared():
    assert 'distill-paper = "distill.paper:cli"' in (ROOT / "pyproject.toml").read_text()


def test_the_paper_says_the_loss_scale(runs):
    import dataclasses

    kd = paper.PaperRun.read(runs / "kd").recipe.kd
    assert "scaled" not in paper._kd_term(kd)
    assert paper._kd_term(dataclasses.replace(kd, loss_scale=0.25)).endswith("; the whole loss is scaled by 0.25")


@pytest.mark.parametrize(
    "loss, cited, words",
    [("dkd", ["zhao2022dkd"], "decoupled KD"), ("dist", ["huang2022dist"], "DIST's correlation loss"),
     ("kl_std", ["sun2024logitstd"], "z-scored logits"), ("dkd_std", ["zhao2022dkd", "sun2024logitstd"], "TCKD")],
)  # fmt: skip
def test_the_paper_names_and_cites_the_kd_loss(loss, cited, words, runs):
    import dataclasses

    student = paper.PaperRun.read(runs / "kd")
    student.recipe.kd = dataclasses.replace(student.recipe.kd, loss=loss)
    keys = paper.references([student])
    assert all(k in keys and k in paper.BIB for k in cited) and "hinton2015kd" in keys
    assert words in paper._kd_term(student.recipe.kd) and f"citep{{{cited[0]}}}" in paper._kd_term(student.recipe.kd)
    assert paper.references([paper.PaperRun.read(runs / "ce")]).count("zhao2022dkd") == 0


@pytest.fixture(scope="module")
def transfer_run(runs, synthetic_dir, tmp_path_factory):
    """A KD student that also distilled on the synthetic CIFAR-10 test images (its transfer set), unlabelled."""
    import pickle

    import numpy as np

    from distill import cache_logits
    from distill.data import load_cifar10

    root = tmp_path_factory.mktemp("paper_transfer")
    images = load_cifar10(synthetic_dir, download=False)[1].images
    pkl = root / "test_nolabel.pkl"
    pkl.write_bytes(pickle.dumps({"data": images, "ids": np.arange(len(images))}))
    cache_logits.main(["--teacher", str(runs / "teacher"), "--out", str(root / "cache"), "--unlabeled", str(pkl),
                       *tiny(synthetic_dir)])  # fmt: skip
    train_student.main(["--recipe", "kd_smoke", "--teacher-cache", str(root / "cache"), "--unlabeled", str(pkl),
                        "--output-dir", str(root / "kd_transfer"), *tiny(synthetic_dir, "train.eval_every=1000")])  # fmt: skip
    return root


def test_the_paper_says_what_differs_and_what_the_transfer_set_is(runs, transfer_run, tmp_path, synthetic_dir,
                                                                  monkeypatch):  # fmt: skip
    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    dirs = [transfer_run / "kd_transfer", runs / "kd", runs / "teacher", runs / "ce"]
    result = paper.paper(dirs, out=tmp_path / "p", repo=REPO, data_dir=str(synthetic_dir))
    text = (tmp_path / "p" / "main.tex").read_text()
    table = text[text.index(r"\begin{table*}") : text.index(r"\label{tab:differences}")]  # a wide float, on page 1
    assert text.index(r"\label{tab:differences}") < text.index(r"\subsection{Architecture}")
    header = next(line for line in table.splitlines() if line.startswith("run & "))
    assert "teacher" in header and "transfer set" in header and "model" in header  # they differ between the runs
    assert "epochs" not in header and "All share:" in table and "epochs 2" in table  # the same for all: the caption
    row = next(line for line in table.splitlines() if line.startswith("kd\\_transfer &"))
    assert "200 img." in row and "& teacher &" in row  # the teacher, by its run's name
    assert "the CIFAR-10 test images themselves, without their labels, as the transfer set" in text
    assert "200 unlabelled images of test\\_nolabel.pkl" in text
    assert (
        "and the accuracy of each epoch evaluated" in text and "curves" in result["figures"]
    )  # the smoke runs' curves
    assert "The shift figure is left out: the student has no shift suite" in text
    # alone, the student that evaluated only after its last epoch: no per-epoch test curve is promised
    paper.paper(dirs[:1], out=tmp_path / "alone", repo=REPO, data_dir=str(synthetic_dir))
    alone = (tmp_path / "alone" / "main.tex").read_text()
    assert "no per-epoch test curve is drawn" in alone and r"\label{tab:differences}" not in alone


def test_the_inspected_scored_set_joins_the_paper(runs, tmp_path, synthetic_dir, monkeypatch):
    import pickle

    from distill.data import load_cifar10
    from distill.inspection import inspect_set

    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    images = (load_cifar10(synthetic_dir, download=False)[1].images * 0.6).astype("uint8")
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({"data": images}))
    reading = inspect_set(tmp_path / "s.pkl", tmp_path / "insp", data_dir=str(synthetic_dir))["reading"]
    result = write(runs, tmp_path, synthetic_dir, inspect=tmp_path / "insp")
    text = (tmp_path / "paper" / "main.tex").read_text()
    assert "scored" in result["figures"] and (tmp_path / "paper" / "scored.pdf").is_file()
    assert "scored.pdf" in text and paper.tex(reading) in text and "darker" in reading
    with pytest.raises(UserError, match="holds no distill-inspect output"):
        write(runs, tmp_path, synthetic_dir, inspect=tmp_path, out=tmp_path / "other")
    # an inspection of another model is not "this student's" BatchNorm shift; one that records no images, unchecked
    inspect_set(tmp_path / "s.pkl", tmp_path / "insp_ce", run=runs / "ce", data_dir=str(synthetic_dir))
    with pytest.raises(UserError, match=r"read the model of .*ce, not this paper's student .*kd"):
        write(runs, tmp_path, synthetic_dir, inspect=tmp_path / "insp_ce", out=tmp_path / "other")
    inspect_set(tmp_path / "s.pkl", tmp_path / "insp_kd", run=runs / "kd", data_dir=str(synthetic_dir))
    write(runs, tmp_path, synthetic_dir, inspect=tmp_path / "insp_kd", out=tmp_path / "other")  # the student's: fine
    import json

    old = json.loads((tmp_path / "insp" / "inspect.json").read_text())
    del old["images_sha256"]
    (tmp_path / "insp" / "inspect.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="does not record which images it read"):
        write(runs, tmp_path, synthetic_dir, inspect=tmp_path / "insp", out=tmp_path / "third")


@pytest.mark.slow
@needs_tex
def test_four_runs_and_the_scored_set_still_fit_4_pages(runs, transfer_run, tmp_path, synthetic_dir):
    import pickle

    from distill.data import load_cifar10
    from distill.inspection import inspect_set

    images = load_cifar10(synthetic_dir, download=False)[1].images
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({"data": images}))
    inspect_set(tmp_path / "s.pkl", tmp_path / "insp", data_dir=str(synthetic_dir))
    dirs = [transfer_run / "kd_transfer", runs / "kd", runs / "teacher", runs / "ce"]
    result = paper.paper(dirs, out=tmp_path / "p", repo=REPO, data_dir=str(synthetic_dir), inspect=tmp_path / "insp")
    assert result["pages"] is not None and 1 <= result["pages"] <= 4
    assert set(result["figures"]) == {"curves", "confusion", "scored"}
    pdf = tmp_path / "p" / "main.pdf"
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout.split())
    assert "All share:" in text and "transfer set" in text and "overlaps CIFAR-10" in text
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")], check=True)


@pytest.mark.slow
@needs_tex
def test_unicode_names_are_written_and_the_engine_is_named(runs, tmp_path, synthetic_dir, capsys):
    result = write(runs, tmp_path, synthetic_dir, authors="José Müller, 李雷, Ана Иванова")
    tex_source = (tmp_path / "paper" / "main.tex").read_text()
    assert "李雷" in tex_source and "Ана Иванова" in tex_source and (tmp_path / "paper" / "refs.bib").is_file()
    said = capsys.readouterr().out
    assert result["pages"] is None and "latexmk -xelatex" in said and "XeLaTeX or LuaLaTeX" in said
    assert not list(tmp_path.glob("paper-latex.log"))


def test_out_an_existing_file_says_so(runs, tmp_path, synthetic_dir):
    (tmp_path / "paper").write_text("notes")
    with pytest.raises(UserError, match="--out .*paper is a file; give the directory the paper should go into"):
        write(runs, tmp_path, synthetic_dir)
    assert (tmp_path / "paper").read_text() == "notes"


def test_the_words_are_templates_and_every_value_is_escaped(runs, tmp_path, synthetic_dir, monkeypatch):
    """main.tex, aaailike.sty and refs.bib are package data (STYLE 15); a title, names and affiliation holding
    LaTeX's special characters come out escaped, and the architecture sentence is the student class's own."""
    monkeypatch.setattr(paper, "compile_pdf", lambda folder: (None, "no TeX engine on PATH"))
    assert (paper.TEMPLATES / "main.tex").is_file() and set(paper.BIB) >= {"hinton2015kd", "zhao2022dkd"}
    write(runs, tmp_path, synthetic_dir, title="Ours & theirs: 100% {KD}", authors="A_B #1", affiliation="R&D ~lab")
    text = (tmp_path / "paper" / "main.tex").read_text()
    assert r"\title{Ours \& theirs: 100\% \{KD\}}" in text and r"\author{A\_B \#1}" in text
    assert r"R\&D \textasciitilde{}lab" in text and "\\VAR{" not in text and "\\BLOCK{" not in text
    arch = architecture(load_run(runs / "kd")[1])
    assert (
        arch["block"] == {"inner_activation": "ReLU", "norm_weights": "learned"} and arch["head"]["pool"] == "average"
    )
    assert "convolution, batch normalisation \\citep{ioffe2015bn}, ReLU, convolution" in text


def test_runs_that_differ_outside_the_named_columns_are_told_apart():
    """Two students that differ only in a model kwarg, the seed or the optimiser would read as the same row."""
    from types import SimpleNamespace

    from distill.recipe import load_recipe

    base = load_recipe("kd_fast94")
    relu = load_recipe("kd_fast94", ["model.kwargs.act=relu", "seed=1"])
    slower = load_recipe("kd_fast94", ["train.lr=0.5", "kd.temperature=4"])  # T has its own column
    many = load_recipe("kd_fast94", ["train.lr=0.5", "train.momentum=0.9", "train.lookahead=false", "seed=2"])
    cells = paper.also_differ([SimpleNamespace(recipe=r) for r in (base, relu, slower, many)])
    assert cells == ["--", "act relu, seed 1", "lr 0.5", "seed 2, lookahead False, lr 0.5, +1 more"]
    # a kd.* field that no column names (the loss's scale, DKD's beta) is told apart too (issue 35)
    scaled = load_recipe("kd_fast94", ["kd.temperature=4", "kd.loss_scale=0.25"])
    beta = load_recipe("kd_fast94", ["kd.loss=dkd", "kd.dkd_beta=2"])
    cells = paper.also_differ([SimpleNamespace(recipe=r) for r in (base, scaled, beta)])
    assert cells == ["--", "loss\\_scale 0.25", "dkd\\_beta 2"]


def test_a_muon_run_is_described_and_cited():
    """A run trained with train.optimizer=muon: its optimiser in words, with Muon's reference (it raised KeyError)."""
    from types import SimpleNamespace

    from distill.recipe import load_recipe

    r = SimpleNamespace(recipe=load_recipe("kd_fast94_muon"), summary={}, shift=None)
    text = paper._describe_training(r)
    assert text.startswith("Muon \\citep{jordan2024muon} on every convolution's filter bank (learning rate 0.24, "
                           "momentum 0.6, 3 Newton--Schulz steps, each bank scaled to norm $\\sqrt{\\mathrm{out}}$) and "
                           "SGD with Nesterov momentum 0.85 on the other parameters, peak learning rate 0.207 (the SGD "
                           "part) for batch 2000")  # fmt: skip
    assert "jordan2024muon" in paper.references([r]) and "jordan2024muon" in paper.BIB


def test_a_selecting_run_says_so_and_cites_selective_backprop():
    """kd_fast94_muon's 9 epochs are 2 on every image and 7 on 60%: the paper must not read as 9 full epochs."""
    from types import SimpleNamespace

    from distill.recipe import load_recipe

    r = SimpleNamespace(recipe=load_recipe("kd_fast94_muon"), summary={}, shift=None)
    assert ("; selective epochs \\citep{jiang2019biggest}: after 2 epochs on every image, each epoch on the 60\\% of images whose loss was "
            "highest when last trained on (25\\% of them drawn from the rest), in as many steps;") in paper._describe_training(r)  # fmt: skip
    assert "jiang2019biggest" in paper.references([r]) and "jiang2019biggest" in paper.BIB
    full = SimpleNamespace(recipe=load_recipe("kd_fast94_muon", ["train.select_fraction=1"]), summary={}, shift=None)
    assert "selective" not in paper._describe_training(full) and "jiang2019biggest" not in paper.references([full])


def test_a_held_whitening_bias_is_said():
    from types import SimpleNamespace

    from distill.recipe import load_recipe

    held = SimpleNamespace(
        recipe=load_recipe("teacher_94_muon", ["train.whiten_bias_epochs=3"]), summary={}, shift=None
    )
    assert "; the whitening bias trained for 3 epochs, then held;" in paper._describe_training(held)
    one = SimpleNamespace(recipe=load_recipe("teacher_94_muon"), summary={}, shift=None)  # the recipe holds it after 1
    described = paper._describe_training(one)
    assert "; the whitening bias trained for 1 epoch, then held;" in described
    assert "after 1 epoch on every image, each epoch on the 65\\% of images" in described and ", 9 epochs;" in described
    plain = SimpleNamespace(
        recipe=load_recipe("teacher_94_muon", ["train.whiten_bias_epochs=0"]), summary={}, shift=None
    )
    assert "whitening bias" not in paper._describe_training(plain)
