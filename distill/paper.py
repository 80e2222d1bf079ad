"""Stage 6: the project report as a 4-page paper in AAAI's two-column layout, written from the runs.

    distill-paper runs/kd_t4 runs/teacher runs/ce --authors "Ada Lovelace, Alan Turing" --out paper
    python distill/paper.py runs/kd_t4 runs/teacher --title "..." --repo https://github.com/us/distill --style-dir AuthorKit24/LaTeX

The student's run comes first, then its teacher(s), baselines and ablations. Writes ``--out`` (default
``paper/``): ``main.tex``, ``refs.bib``, vector figures (PDF, TrueType fonts), the layout's ``.sty`` and, where a
TeX engine is on PATH, ``main.pdf`` (``latexmk -pdf``, else ``pdflatex`` + ``bibtex``), then says how many
pages it has and, over 4, which floats ``--no-figure`` can drop. Without TeX it writes the sources and says
how to compile them; Overleaf compiles ``paper/`` as it is.

Every number comes from the runs: accuracies and times from ``summary.json``, the trainable parameters and
the architecture table (the assignment's N, B_i, C_i, F_i, K_i and P) from the model rebuilt from its
weights, the optimiser, schedule, augmentation and KD settings from ``recipe.yaml``, the shift suite from
``RUN/shift/shift.json`` when it was run. Generated prose states only what was run and measured; the team's
own analysis goes into the marked ``Write here:`` blocks. References are those of what the recipes used.

The layout: ``--style-dir`` points at a copy of AAAI's author kit (``aaai24.sty``, which cannot ship with this
project: it carries no licence and asks not to be modified), copied into the paper. Without it,
``aaailike.sty`` (written here) reproduces its geometry: US letter, two columns, a 7.0 x 9.0 in text block,
0.75 in left, right and top margins, 0.375 in between the columns, Times 10 pt on 11 pt, unnumbered centred
section heads, no page numbers; it loads nothing the kit forbids (no hyperref, geometry, float or fontenc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from distill.augment import TTASpec
from distill.data import CLASSES, load_cifar10, load_test_pickle, load_unlabeled, shared_images
from distill.errors import UserError, cli_main
from distill.files import check_writable, sha256_file, staged_directory
from distill.inspection import images_fingerprint
from distill.models import architecture, count_trainable
from distill.recipe import Recipe, flat_fields
from distill.report import Run, plot_confusion, plot_curves, predictions
from distill.runs import WEIGHTS, load_run, started_with
from distill.shift import family_means, plot_shift

FIGURES = ("curves", "confusion", "shift", "scored")  # what --no-figure can drop
PAGE_LIMIT = 4
LATEX_TIMEOUT = 300  # seconds for the whole compilation


@dataclass
class PaperRun:
    """A finished run as the paper uses it: its summary, metrics, recipe and rebuilt model."""

    run: Run
    recipe: Recipe
    params: int
    shift: dict | None

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def summary(self) -> dict:
        return self.run.summary

    @classmethod
    def read(cls, path: str | Path) -> "PaperRun":
        run = Run.read(path)
        recipe, model = load_run(path)
        shift_file = Path(path) / "shift" / "shift.json"
        shift = json.loads(shift_file.read_text()) if shift_file.is_file() else None
        return cls(run, recipe, count_trainable(model), shift)


TEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}  # fmt: skip


def tex(text: object) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(TEX_SPECIAL.get(c, c) for c in str(text))


def epochs(n: float, kind: str = "") -> str:
    """``n`` epochs in words: "1 epoch", "3 epochs", "0 warm-up epochs" (``kind="warm-up "``)."""
    return f"{n:g} {kind}epoch" + ("" if n == 1 else "s")


def pct(x: float) -> str:
    return f"{100 * x:.2f}\\%"


# -- references: what the recipes used ---------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data: main.tex, aaailike.sty, refs.bib


def _read_bib(path: Path) -> dict[str, str]:
    """The entries of a .bib file by key, each as written there."""
    entries = {}
    for chunk in path.read_text().split("\n@")[1:]:
        entry = "@" + chunk.strip()
        entries[entry[entry.index("{") + 1 : entry.index(",")]] = entry
    return entries


BIB = _read_bib(TEMPLATES / "refs.bib")  # every reference the paper may cite; refs.bib gets those the runs used
FALLBACK_STY = (TEMPLATES / "aaailike.sty").read_text()


LOSS_REFERENCES = {"kl": [], "kl_std": ["sun2024logitstd"], "dkd": ["zhao2022dkd"], "dkd_std": ["zhao2022dkd",
                   "sun2024logitstd"], "dist": ["huang2022dist"]}  # fmt: skip


def references(runs: list[PaperRun]) -> list[str]:
    """The keys of :data:`BIB` that the runs' recipes and suites used."""
    keys = ["krizhevsky2009cifar", "he2016resnet", "ioffe2015bn", "wightman2019timm", "gugger2022accelerate"]
    for r in runs:
        aug, train, model = r.recipe.augment, r.recipe.train, r.recipe.model
        keys += ["hinton2015kd"] if r.summary.get("teacher_cache") else []
        keys += LOSS_REFERENCES[r.recipe.kd.loss] if r.summary.get("teacher_cache") else []
        keys += ["muller2021trivialaugment"] if aug.policy != "none" else []
        keys += ["devries2017cutout"] if aug.cutout else []
        keys += ["zhang2018mixup"] if aug.mixes and aug.mixup_alpha > 0 else []
        keys += ["yun2019cutmix"] if aug.mixes and aug.cutmix_alpha > 0 else []
        keys += ["szegedy2016inception"] if train.label_smoothing else []
        keys += ["zhang2019lookahead"] if train.lookahead else []
        keys += ["loshchilov2017sgdr"] if train.schedule == "cosine" else []
        keys += ["sutskever2013momentum"] if train.optimizer in ("sgd", "muon") else []
        keys += ["jordan2024muon"] if train.optimizer == "muon" else []
        keys += ["jiang2019biggest"] if train.select_fraction < 1 else []
        keys += ["jordan2024airbench"] if model.name.startswith("cifar_air") or model.kwargs.get("whiten") else []
        keys += ["hendrycks2019corruptions"] if r.shift else []
        keys += ["recht2018cifar101"] if r.shift and r.shift.get("natural") else []
    return list(dict.fromkeys(keys))


# -- the text ----------------------------------------------------------------------------------------


def _check_runs(runs: list[PaperRun]) -> None:
    students = [r for r in runs if r.run.role == "student"]
    if not students:
        raise UserError("no student among the runs; give the student's run first, then its teacher(s) and baselines")
    if runs[0].run.role != "student":
        raise UserError(
            f"the first run, {runs[0].run.path}, is a teacher; give the student's run first, then its teacher(s)"
        )
    for r in runs:
        if r.summary.get("trained_on_test"):
            raise UserError(
                f"run {r.run.path} trained on the test split (data.train_on_test=true): it has no test accuracy to "
                f"report; leave it out of the paper"
            )
    first = runs[0]
    for r in runs[1:]:
        ours = (first.summary["test_images"], first.recipe.data.test_limit)
        theirs = (r.summary["test_images"], r.recipe.data.test_limit)
        if ours != theirs:
            raise UserError(
                f"runs {first.run.path} and {r.run.path} were scored on different test sets ({ours[0]:,} and "
                f"{theirs[0]:,} images); one table compares runs of one test set"
            )


def _cache_teachers(r: PaperRun) -> list[dict] | None:
    """The teachers a distilled run's cache records (run dir, weights sha256), or None: no cache, or gone."""
    cache = r.summary.get("teacher_cache")
    try:
        return json.loads((Path(cache) / "meta.json").read_text())["teachers"] if cache else None
    except (OSError, ValueError, KeyError):
        return None


def _check_teachers(runs: list[PaperRun]) -> None:
    """Each teacher run given must have taught a student given (its weights in that student's cache): else the
    paper would name as the teacher a run that taught nobody in it."""
    teachers = [t for r in runs if r.run.role == "student" for t in _cache_teachers(r) or []]
    taught = {t["weights_sha256"] for t in teachers}
    if not taught:  # no distilled student, or their caches are gone: nothing to check against
        return
    for r in runs:
        if r.run.role == "teacher" and sha256_file(r.run.path / WEIGHTS) not in taught:
            who = sorted({Path(t.get("run_dir", "?")).name for t in teachers})
            raise UserError(
                f"teacher run {r.run.path} taught none of the students given (their caches hold the logits of "
                f"{', '.join(who)}); give the teacher run(s) the student distilled from, or leave it out"
            )


def _kd_term(kd) -> str:
    """The KD term ``D`` of the recipe's ``kd.loss``, in words and symbols, with its paper cited, and the loss's scale."""
    scale = f"; the whole loss is scaled by {kd.loss_scale:g}" if kd.loss_scale != 1 else ""
    return _d_term(kd) + scale


def _d_term(kd) -> str:
    kl = r"T^2\,\mathrm{KL}\big(p^{\mathrm{t}}_T \,\|\, p^{\mathrm{s}}_T\big)"
    if kd.loss == "kl":
        return f"$D = {kl}$ \\citep{{hinton2015kd}} at temperature $T={kd.temperature:g}$"
    if kd.loss == "dist":
        return (
            f"$D$ DIST's correlation loss \\citep{{huang2022dist}}, $\\tau^2(\\beta(1-\\bar\\rho_{{\\mathrm{{inter}}}}) + "
            f"\\gamma(1-\\bar\\rho_{{\\mathrm{{intra}}}}))$ with the Pearson correlations of $p^{{\\mathrm{{s}}}}_\\tau$ and "
            f"$p^{{\\mathrm{{t}}}}_\\tau$ per image and per class over the batch, $\\tau={kd.temperature:g}$, "
            f"$\\beta={kd.dist_beta:g}$, $\\gamma={kd.dist_gamma:g}$"
        )
    std = kd.loss.endswith("_std")
    temp = kd.std_temperature if std else kd.temperature
    on = (
        f" on z-scored logits \\citep{{sun2024logitstd}} (each image's logits less their mean, over their standard "
        f"deviation), weighed {kd.std_weight:g},"
        if std
        else ""
    )
    if kd.loss == "kl_std":
        return f"$D = {kl}${on} at base temperature $T={temp:g}$"
    return (
        f"$D$ decoupled KD \\citep{{zhao2022dkd}}{on} $\\alpha_{{\\mathrm{{DKD}}}}\\,\\mathrm{{TCKD}} + \\beta_{{\\mathrm{{DKD}}}}"
        f"\\,\\mathrm{{NCKD}}$ (target-vs-rest and non-target KL, each times $T^2$), $T={temp:g}$, "
        f"$\\alpha_{{\\mathrm{{DKD}}}}={kd.dkd_alpha:g}$, $\\beta_{{\\mathrm{{DKD}}}}={kd.dkd_beta:g}$, rising from 0 over the "
        f"first {100 * kd.dkd_warmup:.1f}\\% of the steps; the target class of an unlabelled image is the teacher's argmax"
    )


def _describe_training(r: PaperRun) -> str:
    t, a = r.recipe.train, r.recipe.augment
    sgd = f"SGD with {'Nesterov ' if t.nesterov else ''}momentum {t.momentum:g}"
    opt = {
        "sgd": sgd,
        "adamw": "AdamW",
        "muon": f"Muon \\citep{{jordan2024muon}} on every convolution's filter bank (learning rate {t.muon_lr:g}, momentum "
        f"{t.muon_momentum:g}, {t.muon_ns_steps} Newton--Schulz steps"
        + (", each bank scaled to norm $\\sqrt{\\mathrm{out}}$" if t.muon_normalize else "")
        + f") and {sgd} on the other parameters",
    }[t.optimizer]
    parts = [
        f"{opt}, peak learning rate {t.lr:g}{' (the SGD part)' if t.optimizer == 'muon' else ''} for batch {t.batch_size}, {t.schedule} decay to {t.lr_min:g} after "
        f"{epochs(t.warmup_epochs, 'warm-up ')}, weight decay {t.weight_decay:g}, {epochs(t.epochs)}",
        f"augmentation: {tex(a.label)}",
    ]
    parts += [f"label smoothing {t.label_smoothing:g}"] if t.label_smoothing else []
    parts += (
        [
            f"selective epochs \\citep{{jiang2019biggest}}: after {epochs(t.select_after)} on every image, each epoch on the "
            f"{t.select_fraction:.0%} of images whose loss was highest when last trained on ({t.select_random:.0%} of "
            f"them drawn from the rest), in as many steps".replace("%", "\\%")
        ]
        if t.select_fraction < 1
        else []
    )
    parts += (
        [f"the whitening bias trained for {epochs(t.whiten_bias_epochs)}, then held"] if t.whiten_bias_epochs else []
    )
    parts += [f"Lookahead (k={t.lookahead_k})"] if t.lookahead else []
    parts += [f"EMA of the weights (decay {t.ema_decay:g})"] if t.ema_decay else []
    parts += [f"test-time augmentation: {tex(r.recipe.tta.label)}"]
    return "; ".join(parts)


def _architecture_table(arch: dict) -> str:
    rows = []
    for i, layer in enumerate(arch["layers"], 1):
        skip = f"{layer['skip_kernel']}$\\times${layer['skip_kernel']}" if layer["skip_kernel"] else "identity"
        rows.append(
            f"{i} & {layer['blocks']} & {layer['channels']} & {layer['conv_kernel']}$\\times${layer['conv_kernel']} & "
            f"{skip} & {layer['in_size']}$\\to${layer['out_size']} & {layer['params']:,} \\\\"
        )
    stem = arch["stem"]
    stem_desc = (
        f"{stem['kernel']}$\\times${stem['kernel']} conv, {stem['channels']} ch."
        + (", frozen whitening before it" if stem["whitening"] else "")
        + (", 2$\\times$2 max-pool" if stem["pool"] else "")
    )
    return "\n".join([
        r"\begin{table}[htb]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3.5pt}",
        r"\begin{tabular}{rrrccrr}", r"\hline",
        r"$i$ & $B_i$ & $C_i$ & $F_i$ & $K_i$ & size & params \\", r"\hline",
        *rows, r"\hline",
        r"\end{tabular}",
        f"\\caption{{The student's residual layers, read off the trained model: $N={arch['N']}$ layers, $B_i$ blocks of "
        f"$C_i$ channels with $F_i\\times F_i$ convolutions and $K_i\\times K_i$ skip convolutions, the feature map's side "
        f"in and out, trainable parameters. Stem: {stem_desc} ({stem['params']:,} parameters); head: {arch['P']}$\\times$"
        f"{arch['P']} {arch['head']['pool']} pool ($P={arch['P']}$), linear layer ({arch['head_params']:,})"
        + (f", logits $\\times {arch['head']['logit_scale']:.4g}$" if arch["head"]["logit_scale"] != 1 else "") + ". "
        f"Total: {arch['trainable_params']:,} trainable parameters.}}",
        r"\label{tab:arch}", r"\end{table}",
    ])  # fmt: skip


def _results_table(runs: list[PaperRun]) -> str:
    rows = []
    for r in runs:
        s = r.summary
        rows.append(
            f"{tex(r.name)} & {r.run.role} & {r.params / 1e6:.2f}M & {pct(s['test_accuracy'])} & {s['epochs']} & "
            f"{s['wall_seconds']:,.0f} \\\\"
        )
    device = tex(runs[0].summary["device"])
    return "\n".join([
        r"\begin{table}[htb]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
        r"\begin{tabular}{llrrrr}", r"\hline", r"run & role & params & test acc. & epochs & train s \\", r"\hline",
        *rows, r"\hline", r"\end{tabular}",
        f"\\caption{{Every run: trainable parameters, final accuracy on the {runs[0].summary['test_images']:,} CIFAR-10 test "
        f"images with each recipe's test-time augmentation, epochs, and training seconds on {device}.}}",
        r"\label{tab:results}", r"\end{table}",
    ])  # fmt: skip


def _teacher_of(r: PaperRun) -> str:
    """The teacher run(s) a student distilled from, by name, read from its cache's meta.json; "-" for none."""
    if not r.summary.get("teacher_cache"):
        return "--"
    teachers = _cache_teachers(r)
    if teachers is None:
        return "a cache no longer there"
    names = [Path(t.get("run_dir", "?")).name for t in teachers]
    return names[0] if len(names) == 1 else f"ensemble of {len(names)}"


def settings(r: PaperRun) -> dict[str, str]:
    """What a run's recipe chose, in the words of the differences table."""
    rec, kd = r.recipe, r.summary.get("teacher_cache")
    n = r.summary.get("unlabeled_images", 0)
    return {
        "model": tex(rec.model.name),
        "teacher": tex(_teacher_of(r)) if r.run.role == "student" else "--",
        "KD loss": tex(rec.kd.loss) if kd else "--",
        "$\\alpha$": f"{rec.kd.alpha:g}" if kd else "--",
        "$T$": f"{rec.kd.std_temperature if rec.kd.loss.endswith('_std') else rec.kd.temperature:g}" if kd else "--",
        "transfer set": f"{n:,} img." if n else "--",
        "epochs": str(rec.train.epochs),
        "augmentation": tex(rec.augment.label),
        "label sm.": f"{rec.train.label_smoothing:g}",
        "TTA": tex(rec.tta.label),
    }


# Recipe fields the named columns of the differences table already say, or that do not change what is learned:
# whole fields, and sections the named columns say whole (augment.label and tta.label name every field of theirs).
# Every other field, kd.loss_scale or DKD's beta among them, is named in the "also" column where runs differ.
SAID = {"model.name", "kd.loss", "kd.alpha", "kd.temperature", "kd.std_temperature", "kd.teacher", "kd.unlabeled",
        "train.epochs", "train.label_smoothing", "data.dir", "data.download", "train.eval_every",
        "train.checkpoint_every", "train.eval_batch_size", "train.log_with", "cache.batch_size"}  # fmt: skip
SAID_SECTIONS = ("augment.", "tta.")
ALSO, MORE = "also (vs. row 1)", 3  # the column of other recipe fields; how many a cell names before "+N more"


def _flat(recipe: Recipe) -> dict[str, str]:
    """A recipe's fields as ``section.key`` (and ``model.kwargs.key``) -> value text."""
    return {k: json.dumps(v) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)
            for k, v in flat_fields(recipe.to_dict(), open_kwargs=True).items()}  # fmt: skip


def also_differ(runs: list[PaperRun]) -> list[str]:
    """For each run, every other recipe field (model kwargs, the optimiser, the seed ...) whose value differs from
    the first run's, as ``name value``: what the named columns cannot tell apart is still told apart."""
    flats = [_flat(r.recipe) for r in runs]
    cells = []
    for flat in flats:
        keys = sorted(k for k in flats[0].keys() | flat.keys()
                      if k not in SAID and not k.startswith(SAID_SECTIONS)
                      and flat.get(k, "default") != flats[0].get(k, "default"))  # fmt: skip
        said = [f"{k.rsplit('.', 1)[-1]} {flat.get(k, 'default')}" for k in keys[:MORE]]
        cells.append(tex(", ".join(said) + (f", +{len(keys) - MORE} more" if len(keys) > MORE else "")) or "--")
    return cells


def _differences_table(runs: list[PaperRun]) -> str:
    """What differs between the runs, read from their recipes, beside their accuracies: each comparison reads as an
    ablation. Settings the runs share are said once in the caption; any other recipe field that differs is named
    in an "also" column, so no two rows read the same while their runs differ."""
    rows = [settings(r) for r in runs]
    for row, also in zip(rows, also_differ(runs)):
        row[ALSO] = also
    differ = [k for k in rows[0] if len({row[k] for row in rows}) > 1]
    shared = [f"{k} {rows[0][k]}" for k in rows[0] if k not in differ and k != ALSO]
    # the "also" column wraps within a fixed width: a long list of differing fields must not run off the page
    cols = "l" + "".join("p{0.3\\textwidth}" if k == ALSO else "l" for k in differ) + "r"
    lines = [f"{tex(r.name)} & " + " & ".join(row[k] for k in differ) + (" & " if differ else "")
             + f"{pct(r.summary['test_accuracy'])} \\\\" for r, row in zip(runs, rows)]  # fmt: skip
    return "\n".join([
        r"\begin{table*}[tb]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{2.5pt}",
        f"\\begin{{tabular}}{{{cols}}}", r"\hline",
        "run & " + " & ".join(differ) + (" & " if differ else "") + r"test acc. \\", r"\hline",
        *lines, r"\hline", r"\end{tabular}",
        "\\caption{What differs between the runs (from their recipes), beside their test accuracy"
        + (f". All share: {'; '.join(shared)}." if shared else ".") + "}",
        r"\label{tab:differences}", r"\end{table*}",
    ])  # fmt: skip


def transfer_sentence(r: PaperRun, test_images: np.ndarray | None) -> str:
    """The transfer set by what it is: its images, how many, and whether they are the CIFAR-10 test images."""
    n, files = r.summary.get("unlabeled_images", 0), r.summary.get("transfer_set") or []
    if not n:
        return ""
    what = f"it also distils (KD term only) on the {n:,} unlabelled images of {tex(', '.join(Path(f).name for f in files))}"
    try:
        images = load_unlabeled(files).images
    except UserError:
        return what + " (the transfer set; its file is no longer where the run read it)"
    shared = shared_images(images, test_images) if test_images is not None else 0
    if shared == len(images) == len(test_images):
        return what + ": the CIFAR-10 test images themselves, without their labels, as the transfer set"
    if shared:
        return what + f", the transfer set, {shared:,} of them CIFAR-10 test images (unlabelled)"
    return what + ", the transfer set (none of them a CIFAR-10 test image)"


def check_inspection_fits(inspected: dict, runs: list[PaperRun]) -> None:
    """The paper calls the inspected images "the images to be scored" and their BatchNorm shift "this student's":
    refused when the inspection read another model than the paper's student, or (where the student distilled onto a
    test pickle) other images than that pickle's. An inspection from before these were recorded cannot be checked
    and is refused too."""
    where = inspected["_dir"]
    again = f"run distill-inspect PKL --run {runs[0].run.path} --out {where} again"
    if "images_sha256" not in inspected:
        raise UserError(f"--inspect {where} does not record which images it read (an older distill-inspect); {again}")
    model = inspected.get("model")
    if model is not None:
        weights = runs[0].run.path / "model.safetensors"
        if model.get("run_weights_sha256") != sha256_file(weights):
            raise UserError(
                f"--inspect {where} read the model of {model.get('run')}, not this paper's student {runs[0].run.path}; "
                f"its BatchNorm reading would be another model's: {again}"
            )
    pickles = [Path(f) for f in runs[0].summary.get("transfer_set") or [] if str(f).endswith(".pkl")]
    known = {images_fingerprint(load_test_pickle(f)[0]) for f in pickles if f.is_file()}
    if known and inspected["images_sha256"] not in known:
        raise UserError(
            f"--inspect {where} read {inspected['pickle']}, not the images of the test pickle the student distilled "
            f"onto ({', '.join(map(str, pickles))}); {again.replace('PKL', str(pickles[0]))}"
        )


def read_inspection(folder: str | Path) -> dict:
    """distill-inspect's result in ``folder`` (its inspect.json and stats.png), for --inspect."""
    folder = Path(folder)
    if not (folder / "inspect.json").is_file() or not (folder / "stats.pdf").is_file():
        raise UserError(f"--inspect {folder} holds no distill-inspect output (inspect.json, stats.pdf); run "
                        f"distill-inspect PKL --out {folder} first")  # fmt: skip
    return {**json.loads((folder / "inspect.json").read_text()), "_dir": str(folder)}


WIDE = ("curves", "scored")  # figures of several panels: across both columns


def _figure(name: str, caption: str) -> str:
    wide = name in WIDE
    env = "figure*" if wide else "figure"
    width = "0.8\\textwidth" if wide else "\\columnwidth"
    return "\n".join([f"\\begin{{{env}}}[tb]", r"\centering", f"\\includegraphics[width={width}]{{{name}.pdf}}",
                      f"\\caption{{{caption}}}", f"\\label{{fig:{name}}}", f"\\end{{{env}}}"])  # fmt: skip


def write_here(what: str) -> str:
    return f"\\noindent\\fbox{{\\parbox{{0.96\\columnwidth}}{{\\textbf{{Write here:}} {what}}}}}\n"


@dataclass
class Context:
    """What every section reads: the runs in their roles, and what was drawn and measured beside them."""

    runs: list[PaperRun]
    arch: dict
    figures: dict[str, str]
    repo: str
    left_out: list[str]
    inspected: dict | None
    transfer: str

    @property
    def student(self) -> PaperRun:
        return self.runs[0]

    @property
    def teachers(self) -> list[PaperRun]:
        return [r for r in self.runs if r.run.role == "teacher"]

    @property
    def baselines(self) -> list[PaperRun]:
        return [r for r in self.runs[1:] if r.run.role == "student"]

    @property
    def labels_only(self) -> list[PaperRun]:
        """Baselines of the student's network on labels alone: what distillation is measured against."""
        return [r for r in self.baselines if not r.summary.get("teacher_cache") and r.params == self.student.params]

    @property
    def kd(self) -> bool:
        return bool(self.student.summary.get("teacher_cache"))


def _abstract(c: Context) -> str:
    s, student = c.student.summary, c.student
    parts = [
        f"We train a residual network with {student.params:,} trainable parameters, under the competition's limit of "
        f"5,000,000, to classify CIFAR-10 \\citep{{krizhevsky2009cifar}} from scratch."
    ]
    record = student.run.round
    if c.kd and record and record["round"] > 1:
        taught = " and ".join(tex(Path(t["run_dir"]).name) for t in record["taught_by"])
        parts.append(
            f"It is round {record['round']} of self-training: it learns by knowledge distillation "
            f"\\citep{{hinton2015kd}} from {taught}, the model{'s' if len(record['taught_by']) > 1 else ''} of the "
            f"round before, on the same images, from a fresh initialisation, and changes {record['changed']:,} of "
            f"their {record['count']:,} predictions on the {record['images']} images."
        )
    elif c.kd and c.teachers:
        t = c.teachers[0]
        parts.append(
            f"It learns by knowledge distillation \\citep{{hinton2015kd}} from the logits of a "
            f"{'ensemble of ' + str(len(c.teachers)) + ' ' if len(c.teachers) > 1 else ''}teacher trained from scratch "
            f"({tex(t.recipe.model.name)}, {t.params / 1e6:.2f}M parameters, {pct(t.summary['test_accuracy'])} test accuracy)."
        )
    parts.append(f"The student reaches {pct(s['test_accuracy'])} test accuracy (test-time augmentation: "
                 f"{tex(TTASpec(**s['tta']).label)}) after {epochs(s['epochs'])}.")  # fmt: skip
    if c.kd and c.labels_only:
        base = c.labels_only[0].summary["test_accuracy"]
        gain = s["test_accuracy"] - base
        parts.append(f"The same network on the same schedule with labels alone reaches {pct(base)}: distillation "
                     f"{'adds' if gain >= 0 else 'costs'} {abs(100 * gain):.2f} points.")  # fmt: skip
    if student.shift:
        parts.append(f"Under 12 synthetic corruptions at 5 severities \\citep{{hendrycks2019corruptions}} its mean "
                     f"accuracy is {pct(student.shift['mean_corruption_accuracy'])}.")  # fmt: skip
    return " ".join(parts)


def _overview(c: Context) -> str:
    commit = started_with(c.student.run.path, "commit")
    return (
        f"The task is the CIFAR-10 classification of 32$\\times$32 images into {len(CLASSES)} classes by a residual "
        f"network \\citep{{he2016resnet}} of at most 5 million trainable parameters, trained from scratch without "
        f"extra data. The runs were made with the public code at \\url{{{c.repo}}}"
        + (f" (the student at commit \\texttt{{{commit[:10]}}})" if commit else "")
        + "."
    )


def _architecture(c: Context) -> str:
    block, head = c.arch["block"], c.arch["head"]
    inner = block["inner_activation"]
    frozen = block["norm_weights"] != "learned"
    return "\n".join([
        f"Each residual block computes $\\mathrm{{ReLU}}(S(x)+F(x))$ with $F$ a convolution, batch normalisation "
        f"\\citep{{ioffe2015bn}}, {inner}, convolution and batch normalisation, and $S$ the identity or, where the "
        f"shape changes, a $1\\times1$ convolution with batch normalisation"
        + (" (every batch normalisation's scale frozen at 1, its shift learned)" if frozen else "")
        + f". Table~\\ref{{tab:arch}} lists the student ({tex(c.student.recipe.model.name)}) in the assignment's "
        f"notation; its head is a global {head['pool']} pool and a linear layer"
        + (f" whose logits are scaled by {head['logit_scale']:.4g}" if head["logit_scale"] != 1 else "") + ".",
        "",
        _architecture_table(c.arch),
    ])  # fmt: skip


def _distillation(c: Context) -> str:
    rec = c.student.recipe
    return "\n".join([
        "The teacher's logits are computed once, on exactly the augmented views the student will see, and cached "
        "to disk; the student never runs the teacher. Its loss is",
        r"\begin{equation}",
        r"\mathcal{L} = \alpha\,D\big(z^{\mathrm{s}}, z^{\mathrm{t}}\big) + (1-\alpha)\,\mathrm{CE}(y, "
        r"p^{\mathrm{s}}_1),",
        r"\end{equation}",
        f"with $\\alpha={rec.kd.alpha:g}$, $p_T = \\mathrm{{softmax}}(z/T)$ and {_kd_term(rec.kd)}"
        + (f"; {c.transfer}" if c.transfer else "") + ".",
    ])  # fmt: skip


def _training(c: Context) -> str:
    return (
        "\n\n".join(
            f"\\textbf{{{tex(r.name)}}} ({r.run.role}, {tex(r.recipe.model.name)}): {_describe_training(r)}."
            for r in [c.student, *c.teachers, *c.baselines]
        )
        + "\n"
    )


def _results(c: Context) -> str:
    s, student = c.student.summary, c.student
    lines = [_results_table(c.runs)]
    found = (f"The student reaches {pct(s['test_accuracy'])} on the CIFAR-10 test set with {student.params:,} "
             f"trainable parameters (Table~\\ref{{tab:results}}).")  # fmt: skip
    if c.kd and c.labels_only:
        found += f" Trained on labels alone, the same network reaches {pct(c.labels_only[0].summary['test_accuracy'])}."
    if c.teachers:
        t = c.teachers[0]
        found += f" Its teacher reaches {pct(t.summary['test_accuracy'])} with {t.params:,} parameters."
    lines.append(found)
    if student.shift:
        fam = family_means(student.shift)
        lines.append(
            f"On {student.shift['images']:,} test images under each of 12 corruptions at 5 severities, the student keeps "
            f"{pct(student.shift['mean_corruption_accuracy'])} on average (clean: {pct(student.shift['clean'])}); by "
            "family: " + ", ".join(f"{k} {pct(v)}" for k, v in fam.items()) + "."
        )
    if c.inspected is not None:
        lines.append(f"The images to be scored: {tex(c.inspected['reading'])}")
    lines += [" ".join(c.left_out)] if c.left_out else []
    lines += [_figure(name, caption) for name, caption in c.figures.items() if name not in WIDE]
    return "\n".join(lines)


def _wide_floats(c: Context) -> str:
    """The floats across both columns (the differences table, the many-panel figures). Two-column LaTeX sets such a
    float at the top of a page after the one where it is defined, so they are defined on page 1 and land at the top
    of page 2, beside the text that cites them, not alone on a page after the text has ended."""
    floats = [_differences_table(c.runs)] if len(c.runs) > 1 else []
    return "\n".join(floats + [_figure(name, caption) for name, caption in c.figures.items() if name in WIDE])


def render(c: Context, title: str, authors: str, affiliation: str, style: str, bst: str) -> str:
    """main.tex: the template (words and layout) filled with each section's text (the values)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        block_start_string=r"\BLOCK{", block_end_string="}", variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}", trim_blocks=True, lstrip_blocks=True,
        autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )  # fmt: skip
    env.filters["tex"] = tex
    return env.get_template("main.tex").render(
        style=style, bst=bst, title=title, authors=authors, affiliation=affiliation, repo=c.repo,
        abstract=_abstract(c), overview=_overview(c), architecture=_architecture(c),
        distillation=_distillation(c) if c.kd else "", training=_training(c), results=_results(c), wide=_wide_floats(c),
        write_here=write_here,
    )  # fmt: skip


# -- figures, compilation ----------------------------------------------------------------------------


def _figures(
    runs: list[PaperRun], out: Path, wanted: list[str], data_dir: str | None, inspected: dict | None
) -> tuple[dict[str, str], list[str]]:
    """Vector PDFs of the wanted figures (TrueType fonts, as the kit asks: no Type 3), each with the caption that
    says what it shows; and a sentence for each wanted figure left out because it would have nothing to show."""
    import matplotlib

    matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType, not Type 3
    matplotlib.rcParams["ps.fonttype"] = 42
    made, left_out = {}, []
    student = runs[0]
    if "curves" in wanted:
        panels = plot_curves([r.run for r in runs], out, "curves.pdf")
        made["curves"] = (
            "What every run measured each epoch: training loss (of its own objective) and training accuracy on its "
            "augmented views"
            + (", and the accuracy of each epoch evaluated (no test-time augmentation)." if "eval_acc" in panels else
               ". The recipes evaluate on the test set only after the last epoch (Table~\\ref{tab:results}), so no "
               "per-epoch test curve is drawn.")
        )  # fmt: skip
    if "confusion" in wanted:
        _, test = load_cifar10(data_dir or student.recipe.data.dir, download=False)
        test = test.head(student.recipe.data.test_limit)
        pred = predictions(student.run, test)
        cm = np.zeros((10, 10), dtype=np.int64)
        np.add.at(cm, (test.labels, pred), 1)
        plot_confusion(cm, f"{student.name}: confusion matrix", out / "confusion.pdf")
        made["confusion"] = f"Confusion matrix of the student on the {len(test):,} test images."
    if "shift" in wanted:
        if student.shift:
            plot_shift(student.shift, out / "shift.pdf", f"{student.name} under shift")
            made["shift"] = "The student's accuracy under each corruption and severity."
        else:
            left_out.append("The shift figure is left out: the student has no shift suite (run distill/evaluate.py "
                            "--suite shift on it first).")  # fmt: skip
    if "scored" in wanted and inspected is not None:
        shutil.copy(Path(inspected["_dir"]) / "stats.pdf", out / "scored.pdf")
        made["scored"] = (
            f"The images to be scored ({tex(Path(inspected['pickle']).name)}, {inspected['images']:,} images) against "
            f"the CIFAR-10 test set: per-image brightness, contrast, saturation, sharpness, warmth and green-channel "
            f"mean (distill-inspect)."
        )
    return made, left_out


def compile_pdf(folder: Path) -> tuple[int | None, str]:
    """Compile ``main.tex`` in ``folder``: ``(pages, how)``; pages is None without a TeX engine on PATH."""
    env = {**os.environ, "TEXINPUTS": f"{folder}:", "BIBINPUTS": f"{folder}:", "BSTINPUTS": f"{folder}:"}
    if shutil.which("latexmk"):
        steps = [["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"]]
    elif shutil.which("pdflatex"):
        latex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"]
        steps = [latex, ["bibtex", "main"], latex, latex] if shutil.which("bibtex") else [latex, latex]
    else:
        return None, "no TeX engine on PATH"
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=LATEX_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise UserError(f"{cmd[0]} took over {LATEX_TIMEOUT} s on {folder / 'main.tex'}; see its log") from None
        if proc.returncode != 0 and cmd[0] != "bibtex":
            return -1, _first_error(folder / "main.log", proc.stdout)
    found = re.search(r"Output written on main\.pdf \((\d+) pages?", (folder / "main.log").read_text(errors="replace"))
    return (int(found.group(1)) if found else 0), steps[0][0]


def _first_error(log: Path, output: str) -> str:
    text = log.read_text(errors="replace") if log.is_file() else output
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!"):
            where = next((ln.strip() for ln in lines[i + 1 : i + 8] if re.match(r"l\.\d+", ln)), "")
            return f"{line[1:].strip()}{' (' + where + ')' if where else ''}"
    return (lines[-1] if lines else "no log").strip()


def paper(
    run_dirs: list[str | Path],
    out: str | Path = "paper",
    title: str = "Distilling a Sub-5M Residual Network for CIFAR-10",
    authors: str = "Author One, Author Two",
    affiliation: str = "New York University",
    repo: str | None = None,
    style_dir: str | Path | None = None,
    no_figures: list[str] | None = None,
    data_dir: str | None = None,
    inspect: str | Path | None = None,
) -> dict:
    """Write the paper's sources (and PDF, where TeX is installed) into ``out``; returns what was made.

    Everything is written into a staging directory beside ``out`` and renamed into place once complete."""
    out = Path(out)
    repo = repo or _git_remote()
    unknown = sorted(set(no_figures or []) - set(FIGURES))
    if unknown:
        raise UserError(f"--no-figure {', '.join(unknown)}: the figures are {', '.join(FIGURES)}")
    style = "aaailike"
    if style_dir is not None:
        if not (Path(style_dir) / "aaai24.sty").is_file():
            raise UserError(
                f"--style-dir {style_dir} has no aaai24.sty; point it at the LaTeX folder of AAAI's author kit, or leave "
                f"it out for the built-in layout"
            )
        style = "aaai24"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give the directory the paper should go into (a new one)")
    if out.is_dir() and any(out.iterdir()) and not (out / "main.tex").is_file():
        raise UserError(f"--out {out} holds other files; give a new directory or an earlier paper's")
    inspected = read_inspection(inspect) if inspect is not None else None
    runs = [PaperRun.read(d) for d in run_dirs]
    if not runs:
        raise UserError("give the student's run directory, then its teacher(s) and baselines")
    _check_runs(runs)
    _check_teachers(runs)
    if inspected is not None:
        check_inspection_fits(inspected, runs)
    arch = architecture(load_run(runs[0].run.path)[1])
    check_writable(out.parent, flag="--out")
    with staged_directory(out, "paper.swap") as staging:  # built aside, then swapped in whole
        wanted = [f for f in FIGURES if f not in (no_figures or [])]
        figures, left_out = _figures(runs, staging, wanted, data_dir, inspected)
        test_images = load_cifar10(data_dir or runs[0].recipe.data.dir, download=False)[1].images
        transfer = transfer_sentence(runs[0], test_images)
        if style == "aaai24":
            for f in Path(style_dir).glob("aaai24.*"):  # the user's copy of the kit: .sty and, if there, .bst
                shutil.copy(f, staging / f.name)
        else:
            (staging / "aaailike.sty").write_text(FALLBACK_STY)
        bst = "aaai24" if (staging / "aaai24.bst").is_file() else "plainnat"
        context = Context(runs, arch, figures, repo, left_out, inspected, transfer)
        (staging / "main.tex").write_text(render(context, title, authors, affiliation, style, bst))
        (staging / "refs.bib").write_text("\n\n".join(BIB[k] for k in references(runs)) + "\n")
        pages, how = compile_pdf(staging)
        unusual = sorted({c for c in title + authors + affiliation if ord(c) > 127})
        if pages == -1 and unusual:  # pdflatex cannot set every script: the sources are right, the engine is not
            pages, how = None, f"pdflatex could not typeset {''.join(unusual)} ({how})"
        elif pages == -1:
            log = out.with_name(f"{out.name}-latex.log")
            shutil.copy(staging / "main.log", log) if (staging / "main.log").is_file() else None
            raise UserError(f"LaTeX failed: {how}; the log is {log}")
        for junk in ("aux", "bbl", "blg", "fls", "fdb_latexmk", "out", "log"):
            (staging / f"main.{junk}").unlink(missing_ok=True)
    result = {"out": str(out), "pages": pages, "figures": list(figures), "style": style}
    if pages is None and how.startswith("pdflatex could not"):
        print(f"wrote {out}/main.tex ({style} layout) without a PDF: {how}; the title, authors or affiliation need a "
              f"Unicode engine: compile it with `cd {out} && latexmk -xelatex main.tex` (XeLaTeX, or -lualatex), with a "
              f"font that has those characters, or upload {out}/ to Overleaf and choose XeLaTeX or LuaLaTeX as its "
              f"compiler")  # fmt: skip
    elif pages is None:
        print(f"wrote {out}/main.tex ({style} layout); no TeX engine on PATH: compile it with `cd {out} && latexmk -pdf "
              f"main.tex` (or pdflatex, bibtex, pdflatex twice), or upload {out}/ to Overleaf")  # fmt: skip
    elif pages > PAGE_LIMIT:
        print(f"warning: {out}/main.pdf has {pages} pages, over the {PAGE_LIMIT} allowed; drop floats with --no-figure "
              f"NAME ({', '.join(figures)})")  # fmt: skip
    else:
        print(f"wrote {out}/main.pdf: {pages} page{'s' if pages != 1 else ''} ({style} layout, compiled with {how})")
    return result


def _git_remote() -> str:
    try:
        proc = subprocess.run(["git", "remote", "get-url", "origin"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is None or proc.returncode != 0 or not proc.stdout.strip():
        raise UserError("this checkout has no git remote to link to on page 1; pass --repo URL (the public repository)")
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Write the project report as a 4-page AAAI-format paper from finished runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="run directories: the student first, then teacher(s) and baselines")
    parser.add_argument("--out", default="paper", help="the paper's directory")
    parser.add_argument("--title", default="Distilling a Sub-5M Residual Network for CIFAR-10")
    parser.add_argument("--authors", default="Author One, Author Two", help="the team's names, as printed")
    parser.add_argument("--affiliation", default="New York University")
    parser.add_argument("--repo", help="the public repository's URL (default: this checkout's git remote)")
    parser.add_argument("--style-dir", help="a folder holding AAAI's aaai24.sty (and aaai24.bst): the author kit")
    parser.add_argument("--no-figure", action="append", default=[], choices=FIGURES, help="leave a figure out")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (default: the student's data.dir)")
    parser.add_argument("--inspect", help="distill-inspect's output dir: adds the scored set's figure and reading")
    args = parser.parse_args(argv)
    return paper(args.runs, args.out, args.title, args.authors, args.affiliation, args.repo, args.style_dir,
                 args.no_figure, args.data_dir, args.inspect)  # fmt: skip


def cli() -> None:
    cli_main(main)


if __name__ == "__main__":
    cli()
