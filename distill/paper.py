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

import numpy as np

from distill.augment import TTASpec
from distill.data import CLASSES, load_cifar10, load_unlabeled, shared_images
from distill.errors import UserError, cli_main
from distill.files import check_writable, staged_directory
from distill.models import architecture, count_trainable
from distill.recipe import Recipe
from distill.report import Run, plot_confusion, plot_curves, predictions
from distill.runs import load_run, started_with
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


def pct(x: float) -> str:
    return f"{100 * x:.2f}\\%"


# -- references: what the recipes used ---------------------------------------------------------------

BIB = {
    "he2016resnet": "@inproceedings{he2016resnet,\n  author = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},\n"
    "  title = {Deep Residual Learning for Image Recognition},\n  booktitle = {Proceedings of the IEEE Conference on "
    "Computer Vision and Pattern Recognition (CVPR)},\n  pages = {770--778},\n  year = {2016}\n}",
    "hinton2015kd": "@article{hinton2015kd,\n  author = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},\n  title = "
    "{Distilling the Knowledge in a Neural Network},\n  journal = {arXiv preprint arXiv:1503.02531},\n  year = {2015}\n}",
    "krizhevsky2009cifar": "@techreport{krizhevsky2009cifar,\n  author = {Krizhevsky, Alex},\n  title = {Learning Multiple "
    "Layers of Features from Tiny Images},\n  institution = {University of Toronto},\n  year = {2009}\n}",
    "ioffe2015bn": "@inproceedings{ioffe2015bn,\n  author = {Ioffe, Sergey and Szegedy, Christian},\n  title = {Batch "
    "Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift},\n  booktitle = {Proceedings "
    "of the 32nd International Conference on Machine Learning (ICML)},\n  pages = {448--456},\n  year = {2015}\n}",
    "muller2021trivialaugment": '@inproceedings{muller2021trivialaugment,\n  author = {M{\\"u}ller, Samuel G. and Hutter, '
    "Frank},\n  title = {TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation},\n  booktitle = {Proceedings "
    "of the IEEE/CVF International Conference on Computer Vision (ICCV)},\n  pages = {774--782},\n  year = {2021}\n}",
    "devries2017cutout": "@article{devries2017cutout,\n  author = {DeVries, Terrance and Taylor, Graham W.},\n  title = "
    "{Improved Regularization of Convolutional Neural Networks with Cutout},\n  journal = {arXiv preprint "
    "arXiv:1708.04552},\n  year = {2017}\n}",
    "zhang2018mixup": "@inproceedings{zhang2018mixup,\n  author = {Zhang, Hongyi and Cisse, Moustapha and Dauphin, Yann N. "
    "and Lopez-Paz, David},\n  title = {mixup: Beyond Empirical Risk Minimization},\n  booktitle = {International "
    "Conference on Learning Representations (ICLR)},\n  year = {2018}\n}",
    "yun2019cutmix": "@inproceedings{yun2019cutmix,\n  author = {Yun, Sangdoo and Han, Dongyoon and Oh, Seong Joon and "
    "Chun, Sanghyuk and Choe, Junsuk and Yoo, Youngjoon},\n  title = {CutMix: Regularization Strategy to Train Strong "
    "Classifiers with Localizable Features},\n  booktitle = {Proceedings of the IEEE/CVF International Conference on "
    "Computer Vision (ICCV)},\n  pages = {6023--6032},\n  year = {2019}\n}",
    "szegedy2016inception": "@inproceedings{szegedy2016inception,\n  author = {Szegedy, Christian and Vanhoucke, Vincent "
    "and Ioffe, Sergey and Shlens, Jon and Wojna, Zbigniew},\n  title = {Rethinking the Inception Architecture for "
    "Computer Vision},\n  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition "
    "(CVPR)},\n  pages = {2818--2826},\n  year = {2016}\n}",
    "zhang2019lookahead": "@inproceedings{zhang2019lookahead,\n  author = {Zhang, Michael R. and Lucas, James and Hinton, "
    "Geoffrey and Ba, Jimmy},\n  title = {Lookahead Optimizer: k Steps Forward, 1 Step Back},\n  booktitle = {Advances "
    "in Neural Information Processing Systems (NeurIPS)},\n  year = {2019}\n}",
    "jordan2024airbench": "@article{jordan2024airbench,\n  author = {Jordan, Keller},\n  title = {94\\% on {CIFAR}-10 in 3.29 "
    "Seconds on a Single {GPU}},\n  journal = {arXiv preprint arXiv:2404.00498},\n  year = {2024}\n}",
    "loshchilov2017sgdr": "@inproceedings{loshchilov2017sgdr,\n  author = {Loshchilov, Ilya and Hutter, Frank},\n  title = "
    "{{SGDR}: Stochastic Gradient Descent with Warm Restarts},\n  booktitle = {International Conference on Learning "
    "Representations (ICLR)},\n  year = {2017}\n}",
    "sutskever2013momentum": "@inproceedings{sutskever2013momentum,\n  author = {Sutskever, Ilya and Martens, James and "
    "Dahl, George and Hinton, Geoffrey},\n  title = {On the Importance of Initialization and Momentum in Deep Learning},\n"
    "  booktitle = {Proceedings of the 30th International Conference on Machine Learning (ICML)},\n  pages = "
    "{1139--1147},\n  year = {2013}\n}",
    "hendrycks2019corruptions": "@inproceedings{hendrycks2019corruptions,\n  author = {Hendrycks, Dan and Dietterich, "
    "Thomas},\n  title = {Benchmarking Neural Network Robustness to Common Corruptions and Perturbations},\n  booktitle = "
    "{International Conference on Learning Representations (ICLR)},\n  year = {2019}\n}",
    "recht2018cifar101": "@article{recht2018cifar101,\n  author = {Recht, Benjamin and Roelofs, Rebecca and Schmidt, "
    "Ludwig and Shankar, Vaishaal},\n  title = {Do {CIFAR}-10 Classifiers Generalize to {CIFAR}-10?},\n  journal = "
    "{arXiv preprint arXiv:1806.00451},\n  year = {2018}\n}",
    "zhao2022dkd": "@inproceedings{zhao2022dkd,\n  author = {Zhao, Borui and Cui, Quan and Song, Renjie and Qiu, Yiyu and "
    "Liang, Jiajun},\n  title = {Decoupled Knowledge Distillation},\n  booktitle = {Proceedings of the IEEE/CVF "
    "Conference on Computer Vision and Pattern Recognition (CVPR)},\n  pages = {11953--11962},\n  year = {2022}\n}",
    "huang2022dist": "@inproceedings{huang2022dist,\n  author = {Huang, Tao and You, Shan and Wang, Fei and Qian, Chen and "
    "Xu, Chang},\n  title = {Knowledge Distillation from A Stronger Teacher},\n  booktitle = {Advances in Neural "
    "Information Processing Systems (NeurIPS)},\n  year = {2022}\n}",
    "sun2024logitstd": "@inproceedings{sun2024logitstd,\n  author = {Sun, Shangquan and Ren, Wenqi and Li, Jingzhi and Wang, "
    "Rui and Cao, Xiaochun},\n  title = {Logit Standardization in Knowledge Distillation},\n  booktitle = {Proceedings of "
    "the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n  pages = {15731--15740},\n  year = "
    "{2024}\n}",
    "wightman2019timm": "@misc{wightman2019timm,\n  author = {Wightman, Ross},\n  title = {{PyTorch} Image Models},\n"
    "  howpublished = {\\url{https://github.com/huggingface/pytorch-image-models}},\n  year = {2019}\n}",
    "gugger2022accelerate": "@misc{gugger2022accelerate,\n  author = {Gugger, Sylvain and Debut, Lysandre and Wolf, "
    "Thomas and Schmid, Philipp and Mueller, Zachary and Mangrulkar, Sourab and Sun, Marc and Bossan, Benjamin},\n"
    "  title = {Accelerate: Training and Inference at Scale Made Simple, Efficient and Adaptable},\n  howpublished = "
    "{\\url{https://github.com/huggingface/accelerate}},\n  year = {2022}\n}",
}


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
        keys += ["sutskever2013momentum"] if train.optimizer == "sgd" else []
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


def _kd_term(kd) -> str:
    """The KD term ``D`` of the recipe's ``kd.loss``, in words and symbols, with its paper cited."""
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
    opt = {"sgd": f"SGD with {'Nesterov ' if t.nesterov else ''}momentum {t.momentum:g}", "adamw": "AdamW"}[t.optimizer]
    parts = [
        f"{opt}, peak learning rate {t.lr:g} for batch {t.batch_size}, {t.schedule} decay to {t.lr_min:g} after "
        f"{t.warmup_epochs:g} warm-up epochs, weight decay {t.weight_decay:g}, {t.epochs} epochs",
        f"augmentation: {tex(a.label)}",
    ]
    parts += [f"label smoothing {t.label_smoothing:g}"] if t.label_smoothing else []
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
        f"{arch['P']} average pool ($P={arch['P']}$), linear layer ({arch['head_params']:,}). "
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
    cache = r.summary.get("teacher_cache")
    if not cache:
        return "--"
    try:
        teachers = json.loads((Path(cache) / "meta.json").read_text())["teachers"]
    except (OSError, ValueError, KeyError):
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


def _differences_table(runs: list[PaperRun]) -> str:
    """What differs between the runs, read from their recipes, beside their accuracies: each comparison reads as an
    ablation. Settings the runs share are said once in the caption."""
    rows = [settings(r) for r in runs]
    differ = [k for k in rows[0] if len({row[k] for row in rows}) > 1]
    shared = [f"{k} {rows[0][k]}" for k in rows[0] if k not in differ]
    cols = "l" + "l" * len(differ) + "r"
    lines = [f"{tex(r.name)} & " + " & ".join(row[k] for k in differ) + (" & " if differ else "")
             + f"{pct(r.summary['test_accuracy'])} \\\\" for r, row in zip(runs, rows)]  # fmt: skip
    return "\n".join([
        r"\begin{table}[htb]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{2.5pt}",
        f"\\begin{{tabular}}{{{cols}}}", r"\hline",
        "run & " + " & ".join(differ) + (" & " if differ else "") + r"test acc. \\", r"\hline",
        *lines, r"\hline", r"\end{tabular}",
        "\\caption{What differs between the runs (from their recipes), beside their test accuracy"
        + (f". All share: {'; '.join(shared)}." if shared else ".") + "}",
        r"\label{tab:differences}", r"\end{table}",
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


def read_inspection(folder: str | Path) -> dict:
    """distill-inspect's result in ``folder`` (its inspect.json and stats.png), for --inspect."""
    folder = Path(folder)
    if not (folder / "inspect.json").is_file() or not (folder / "stats.pdf").is_file():
        raise UserError(f"--inspect {folder} holds no distill-inspect output (inspect.json, stats.pdf); run "
                        f"distill-inspect PKL --out {folder} first")  # fmt: skip
    return {**json.loads((folder / "inspect.json").read_text()), "_dir": str(folder)}


def _figure(name: str, caption: str) -> str:
    wide = name in ("curves", "scored")  # several panels: across both columns
    env = "figure*" if wide else "figure"
    width = "0.8\\textwidth" if wide else "\\columnwidth"
    return "\n".join([f"\\begin{{{env}}}[tb]", r"\centering", f"\\includegraphics[width={width}]{{{name}.pdf}}",
                      f"\\caption{{{caption}}}", f"\\label{{fig:{name}}}", f"\\end{{{env}}}"])  # fmt: skip


def write_here(what: str) -> str:
    return f"\\noindent\\fbox{{\\parbox{{0.96\\columnwidth}}{{\\textbf{{Write here:}} {what}}}}}\n"


def body(
    runs: list[PaperRun],
    arch: dict,
    figures: dict[str, str],
    title: str,
    authors: str,
    affiliation: str,
    repo: str,
    left_out: list[str] | None = None,
    inspected: dict | None = None,
    transfer: str = "",
) -> str:
    student = runs[0]
    s, rec = student.summary, student.recipe
    teachers = [r for r in runs if r.run.role == "teacher"]
    baselines = [r for r in runs[1:] if r.run.role == "student"]
    labels_only = [r for r in baselines if not r.summary.get("teacher_cache") and r.params == student.params]
    tta = TTASpec(**s["tta"]).label
    kd = bool(s.get("teacher_cache"))
    abstract = [
        f"We train a residual network with {student.params:,} trainable parameters, under the competition's limit of "
        f"5,000,000, to classify CIFAR-10 \\citep{{krizhevsky2009cifar}} from scratch."
    ]
    if kd and teachers:
        t = teachers[0]
        abstract.append(
            f"It learns by knowledge distillation \\citep{{hinton2015kd}} from the logits of a "
            f"{'ensemble of ' + str(len(teachers)) + ' ' if len(teachers) > 1 else ''}teacher trained from scratch "
            f"({tex(t.recipe.model.name)}, {t.params / 1e6:.2f}M parameters, {pct(t.summary['test_accuracy'])} test accuracy)."
        )
    abstract.append(f"The student reaches {pct(s['test_accuracy'])} test accuracy (test-time augmentation: {tex(tta)}) "
                    f"after {s['epochs']} epochs.")  # fmt: skip
    if kd and labels_only:
        gain = s["test_accuracy"] - labels_only[0].summary["test_accuracy"]
        abstract.append(
            f"The same network on the same schedule with labels alone reaches {pct(labels_only[0].summary['test_accuracy'])}: "
            f"distillation {'adds' if gain >= 0 else 'costs'} {abs(100 * gain):.2f} points."
        )
    if student.shift:
        abstract.append(
            f"Under 12 synthetic corruptions at 5 severities \\citep{{hendrycks2019corruptions}} its mean accuracy is "
            f"{pct(student.shift['mean_corruption_accuracy'])}."
        )
    lines = [
        f"\\title{{{tex(title)}}}",
        f"\\author{{{tex(authors)}}}",
        f"\\affiliations{{{tex(affiliation)}\\\\ Code: \\url{{{repo}}}}}",
        r"\begin{document}",
        r"\maketitle",
        r"\begin{abstract}",
        " ".join(abstract),
        r"\end{abstract}",
        r"\section{Overview}",
        f"The task is the CIFAR-10 classification of 32$\\times$32 images into {len(CLASSES)} classes by a residual "
        f"network \\citep{{he2016resnet}} of at most 5 million trainable parameters, trained from scratch without "
        f"extra data. The runs were made with the public code at \\url{{{repo}}}"
        + (
            f" (the student at commit \\texttt{{{commit[:10]}}})"
            if (commit := started_with(student.run.path, "commit"))
            else ""
        )
        + ".",
        "",
        write_here("the question the project asks, the approach in two sentences, and the main finding."),
        r"\section{Methodology}",
        r"\subsection{Architecture}",
        f"Each residual block computes $\\mathrm{{ReLU}}(S(x)+F(x))$ with $F$ a convolution, batch normalisation "
        f"\\citep{{ioffe2015bn}}, ReLU, convolution and batch normalisation, and $S$ the identity or, where the shape "
        f"changes, a $1\\times1$ convolution with batch normalisation. Table~\\ref{{tab:arch}} lists the student "
        f"({tex(rec.model.name)}) in the assignment's notation.",
        "",
        _architecture_table(arch),
    ]
    if kd:
        lines += [
            r"\subsection{Knowledge distillation}",
            "The teacher's logits are computed once, on exactly the augmented views the student will see, and cached "
            "to disk; the student never runs the teacher. Its loss is",
            r"\begin{equation}",
            r"\mathcal{L} = \alpha\,D\big(z^{\mathrm{s}}, z^{\mathrm{t}}\big) + (1-\alpha)\,\mathrm{CE}(y, "
            r"p^{\mathrm{s}}_1),",
            r"\end{equation}",
            f"with $\\alpha={rec.kd.alpha:g}$, $p_T = \\mathrm{{softmax}}(z/T)$ and {_kd_term(rec.kd)}"
            + (f"; {transfer}" if transfer else "")
            + ".",
        ]
    lines += [r"\subsection{Training}"]
    for r in [student, *teachers, *baselines]:
        lines.append(f"\\textbf{{{tex(r.name)}}} ({r.run.role}, {tex(r.recipe.model.name)}): {_describe_training(r)}.")
        lines.append("")
    lines += [write_here("why this architecture and these settings: their pros and cons, what else was tried.")]
    lines += [r"\section{Results}", _results_table(runs)]
    lines += [_differences_table(runs)] if len(runs) > 1 else []
    result = (f"The student reaches {pct(s['test_accuracy'])} on the CIFAR-10 test set with {student.params:,} "
              f"trainable parameters (Table~\\ref{{tab:results}}).")  # fmt: skip
    if kd and labels_only:
        result += (f" Trained on labels alone, the same network reaches "
                   f"{pct(labels_only[0].summary['test_accuracy'])}.")  # fmt: skip
    if teachers:
        result += (
            f" Its teacher reaches {pct(teachers[0].summary['test_accuracy'])} with {teachers[0].params:,} parameters."
        )
    lines.append(result)
    if student.shift:
        fam = family_means(student.shift)
        lines.append(
            f"On {student.shift['images']:,} test images under each of 12 corruptions at 5 severities, the student keeps "
            f"{pct(student.shift['mean_corruption_accuracy'])} on average (clean: {pct(student.shift['clean'])}); by "
            "family: " + ", ".join(f"{k} {pct(v)}" for k, v in fam.items()) + "."
        )
    if inspected is not None:
        lines.append(f"The images to be scored: {tex(inspected['reading'])}")
    lines += [" ".join(left_out)] if left_out else []
    lines += [_figure(name, caption) for name, caption in figures.items()]
    lines += [write_here("lessons learned: what worked, what did not, and why you think so."), r"\bibliography{refs}",
              r"\end{document}"]  # fmt: skip
    return "\n".join(lines) + "\n"


FALLBACK_STY = r"""\NeedsTeXFormat{LaTeX2e}
\ProvidesPackage{aaailike}[2026/12/01 distill: the AAAI-24 camera-ready geometry, without the author kit]
% US letter; two columns; a 7.0 x 9.0 in text block with 0.75 in left, right and top margins and 0.375 in
% between the columns; Times 10 pt on 11 pt; unnumbered centred section heads; no page numbers.
\RequirePackage{times}
\RequirePackage{helvet}
\RequirePackage{courier}
\RequirePackage{graphicx}
\RequirePackage[hyphens]{url}
\RequirePackage{natbib}
\RequirePackage{caption}
\urlstyle{rm}
\setlength{\paperwidth}{8.5in}\setlength{\paperheight}{11in}
\setlength{\pdfpagewidth}{8.5in}\setlength{\pdfpageheight}{11in}
\setlength{\textwidth}{7in}\setlength{\textheight}{9in}
\setlength{\oddsidemargin}{-0.25in}\setlength{\evensidemargin}{-0.25in}
\setlength{\topmargin}{-0.25in}\setlength{\headheight}{0pt}\setlength{\headsep}{0pt}
\setlength{\columnsep}{0.375in}
\renewcommand{\normalsize}{\@setfontsize\normalsize{10}{11}%
  \abovedisplayskip 7pt plus 2pt minus 4pt\belowdisplayskip\abovedisplayskip}
\renewcommand{\small}{\@setfontsize\small{9}{10}}
\normalsize
\setcounter{secnumdepth}{0}
\renewcommand\section{\@startsection{section}{1}{\z@}{-2ex plus -0.5ex minus -0.2ex}{1ex plus 0.2ex}%
  {\centering\normalfont\fontsize{12}{13}\bfseries}}
\renewcommand\subsection{\@startsection{subsection}{2}{\z@}{-1.5ex plus -0.5ex minus -0.2ex}{0.8ex plus 0.2ex}%
  {\normalfont\fontsize{11}{12}\bfseries}}
\pagestyle{empty}
\let\ps@plain\ps@empty
\def\@affiliations{}
\newcommand{\affiliations}[1]{\gdef\@affiliations{#1}}
\renewcommand{\@maketitle}{\newpage\null\vskip 0.25in\begin{center}%
  {\fontsize{14}{15}\bfseries\@title\par}\vskip 0.2in%
  {\fontsize{11}{12}\bfseries\@author\par}\vskip 0.05in%
  {\fontsize{9}{10}\@affiliations\par}\end{center}\par\vskip 0.3in}
\frenchspacing
"""


def _preamble(style: str) -> str:
    if style == "aaai24":
        return "\\documentclass[letterpaper]{article}\n\\usepackage{aaai24}\n\\usepackage{times}\n\\usepackage{helvet}\n" \
               "\\usepackage{courier}\n\\usepackage[hyphens]{url}\n\\usepackage{graphicx}\n\\urlstyle{rm}\n" \
               "\\usepackage{natbib}\n\\usepackage{caption}\n\\usepackage{amsmath}\n\\frenchspacing\n" \
               "\\setlength{\\pdfpagewidth}{8.5in}\n\\setlength{\\pdfpageheight}{11in}\n"  # fmt: skip
    return "\\documentclass[letterpaper,twocolumn,10pt]{article}\n\\usepackage{aaailike}\n\\usepackage{amsmath}\n"


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
        pred = predictions(student.run, test.images)
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
        text = _preamble(style) + body(
            runs, arch, figures, title, authors, affiliation, repo, left_out, inspected, transfer
        )
        text = text.replace(r"\bibliography{refs}", f"\\bibliographystyle{{{bst}}}\n\\bibliography{{refs}}")
        (staging / "main.tex").write_text(text)
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
