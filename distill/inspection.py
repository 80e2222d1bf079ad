"""distill-inspect: how the images that will be scored differ from CIFAR-10's, in numbers, figures and words.

    distill-inspect cifar_test_nolabel.pkl [--run runs/kd_fast94] [--out inspect] [--data-dir data]

For an unlabelled test pickle, against the CIFAR-10 test set: per-channel means and standard deviations;
histograms of each image's brightness (mean luminance), contrast (standard deviation of luminance),
saturation (HSV's, averaged over the pixels), sharpness (the mean squared Laplacian of luminance, its
high-frequency energy) and warmth (its red mean less its blue mean); exact and near duplicates of CIFAR-10's training and test images (a near duplicate:
the same 8x8 luminance layout, whatever the brightness, contrast or colour); a grid of samples. With
``--run``: the model's predicted classes and confidences on these images against the test set's, and how far
each BatchNorm layer's input statistics on them lie from the ones it stored (what ``--bn-stats test`` would
undo), measured against the same distance on the CIFAR-10 test images. Writes ``report.md``, ``inspect.json``
and the figures into ``--out``, built aside and swapped in whole. Module name: not ``inspect``, which torch
imports from the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from distill.augment import normalize  # noqa: E402
from distill.compute import Compute  # noqa: E402
from distill.data import CLASSES, DataConfig, Split, image_keys, load_cifar10, load_test_pickle  # noqa: E402
from distill.errors import UserError, cli_main  # noqa: E402
from distill.files import (  # noqa: E402
    check_distinct,
    check_writable,
    sha256_file,
    staged_directory,
    write_atomic,
    write_json,
)
from distill.runs import load_run  # noqa: E402

STATS = ("brightness", "contrast", "saturation", "sharpness", "warmth")
WORDS = {  # what a shift of each statistic is called, down / up
    "brightness": ("darker", "brighter"),
    "contrast": ("lower-contrast", "higher-contrast"),
    "saturation": ("less saturated", "more saturated"),
    "sharpness": ("blurrier", "sharper (or noisier)"),
    "warmth": ("cooler (bluer)", "warmer (redder)"),
}
SHIFT = 0.2  # |effect size| (difference of means over CIFAR-10's std) from which a difference is named
SPREAD = 1.5  # a statistic whose spread is this many times CIFAR-10's (or 1/this) is said to vary more (less)
OVERLAP = 0.1  # a share of near copies above this (and above twice CIFAR-10's own test-to-train share) is an overlap
BN_FAR = 0.1  # a layer this much further from its stored statistics than on CIFAR-10's test images is shifted
LESS_SURE = 0.05  # a mean top probability this much below the test set's is said
MIN_IMAGES = 100  # fewer images than this: their statistics are tabled, never called a shift (issue 35)
NEAR = 0.95  # cosine similarity of the normalised 8x8 luminance layouts from which two images are near duplicates
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# -- the images' own statistics -------------------------------------------------------------------------------


def image_stats(images: np.ndarray, chunk: int = 5000) -> dict[str, np.ndarray]:
    """Per-image brightness, contrast, saturation and sharpness, and per-image channel means, of uint8 NHWC images."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in (*STATS, "channel_mean")}
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].astype(np.float32) / 255.0  # (n, 32, 32, 3)
        luma = x @ LUMA  # (n, 32, 32)
        top, low = x.max(-1), x.min(-1)
        laplacian = (
            4 * luma[:, 1:-1, 1:-1] - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2] - luma[:, 1:-1, 2:]
        )
        out["brightness"].append(luma.mean((1, 2)))
        out["contrast"].append(luma.std((1, 2)))
        out["saturation"].append(np.where(top > 0, (top - low) / np.maximum(top, 1e-6), 0.0).mean((1, 2)))
        out["sharpness"].append((laplacian**2).mean((1, 2)))
        out["channel_mean"].append(x.mean((1, 2)))
        out["warmth"].append(out["channel_mean"][-1][:, 0] - out["channel_mean"][-1][:, 2])  # red less blue
    return {k: np.concatenate(v) for k, v in out.items()}


def images_fingerprint(images: np.ndarray) -> str:
    """sha256 of the images' pixels (N, 32, 32, 3): the same images in another file, or another pickle layout, match."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def channel_moments(images: np.ndarray) -> dict[str, list[float]]:
    """The set's per-channel mean and standard deviation of pixels in 0..1 (R, G, B)."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return {"mean": x.mean(0).round(4).tolist(), "std": x.std(0).round(4).tolist()}


def compare_stats(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each statistic's mean here and on CIFAR-10's test set, and the effect size (difference over CIFAR-10's std)."""
    rows = {}
    for k in STATS:
        spread = float(ref[k].std()) or 1e-12
        rows[k] = {
            "mean": float(ours[k].mean()),
            "cifar10_test_mean": float(ref[k].mean()),
            "effect_size": (float(ours[k].mean()) - float(ref[k].mean())) / spread,
            "spread_ratio": float(ours[k].std()) / spread,  # how much more (> 1) or less the images vary in it
        }
    return rows


def describe(
    stats: dict[str, dict], duplicates: dict, bn: list[dict] | None, confidence: tuple[float, float] | None = None
) -> str:
    """The plain-words reading of the numbers; none below :data:`MIN_IMAGES` images, whose means are chance."""
    if duplicates["images"] < MIN_IMAGES:
        n = duplicates["images"]
        return (
            f"Only {n:,} image{'s' if n != 1 else ''}: too few to tell a shift from chance (a reading needs at least "
            f"{MIN_IMAGES}), so none is named; the tables give the numbers as measured."
        )
    named = [WORDS[k][d["effect_size"] > 0] for k, d in stats.items() if abs(d["effect_size"]) >= SHIFT]
    if named:
        words = ", ".join(named[:-1]) + (" and " if len(named) > 1 else "") + named[-1]
        sizes = ", ".join(f"{k} {d['effect_size']:+.2f}" for k, d in stats.items() if abs(d["effect_size"]) >= SHIFT)
        text = f"These images are {words} than CIFAR-10's test images (effect sizes, in CIFAR-10 standard deviations: {sizes})."
    else:
        text = "In brightness, contrast, saturation, sharpness and colour these images look like CIFAR-10's test images on average."
    varied = [k for k, d in stats.items() if d["spread_ratio"] >= SPREAD or d["spread_ratio"] <= 1 / SPREAD]
    if varied:
        text += (
            " They vary "
            + ", ".join(
                f"{'more' if stats[k]['spread_ratio'] > 1 else 'less'} in {k} ({stats[k]['spread_ratio']:.1f}x CIFAR-10's spread)"
                for k in varied
            )
            + "."
        )
    n, exact, near = duplicates["images"], duplicates["exact_total"], duplicates["near_total"]
    base = duplicates["cifar10_test_near_train"]
    if exact:
        text += (
            f" {exact:,} of the {n:,} are exact copies of CIFAR-10 images ({duplicates['exact']['test']:,} of test, "
            f"{duplicates['exact']['train']:,} of training images), and {near:,} more are near copies"
        )
    else:
        text += f" None of the {n:,} is an exact copy of a CIFAR-10 image; {near:,} ({near / n:.1%}) are near copies"
    if exact or near / n > max(OVERLAP, 2 * base):
        text += (
            f" (CIFAR-10's own test images: {base:.1%} lie that near a training image): the set overlaps CIFAR-10, so "
            f"training on those images' CIFAR-10 labels would train on the very images scored."
        )
    else:
        text += f", about as many as CIFAR-10's own test images have among its training images ({base:.1%}): no sign of overlap."
    if bn:
        worst = max(bn, key=lambda r: r["excess"])
        if worst["excess"] > BN_FAR:
            text += (
                f" BatchNorm input statistics differ most in {worst['layer']} ({worst['shift']:.2f} against "
                f"{worst['reference']:.2f} on CIFAR-10's test images): test-time BatchNorm statistics (--bn-stats test) "
                f"would undo that shift."
            )
        else:
            text += (
                f" Every BatchNorm layer's input statistics lie as near its stored ones as on CIFAR-10's test images "
                f"(the largest gap: {worst['layer']}, {worst['shift']:.2f} against {worst['reference']:.2f})."
            )
    if confidence is not None and confidence[1] - confidence[0] > LESS_SURE:
        text += (
            f" The model is less sure of them: its mean top probability is {confidence[0]:.2f}, against "
            f"{confidence[1]:.2f} on CIFAR-10's test images."
        )
    return text


# -- duplicates ---------------------------------------------------------------------------------------------------


def layout(images: np.ndarray, side: int = 8, chunk: int = 10000) -> np.ndarray:
    """Each image's luminance pooled to side x side, less its mean, over its norm: (N, side*side) float32 unit
    vectors, blind to brightness, contrast and colour (a flat image gives the zero vector)."""
    parts = []
    k = 32 // side
    for start in range(0, len(images), chunk):
        luma = images[start : start + chunk].astype(np.float32) @ LUMA  # (n, 32, 32)
        pooled = luma.reshape(len(luma), side, k, side, k).mean((2, 4)).reshape(len(luma), -1)
        pooled -= pooled.mean(1, keepdims=True)
        parts.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-6))
    return np.concatenate(parts) if parts else np.zeros((0, side * side), np.float32)


def nearest(query: np.ndarray, ref: np.ndarray, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``query``, the most similar row of ``ref`` by cosine similarity: (index, similarity)."""
    q, r = torch.from_numpy(query), torch.from_numpy(ref)
    index, sim = [], []
    for start in range(0, len(q), chunk):
        best = (q[start : start + chunk] @ r.T).max(dim=1)
        index.append(best.indices.numpy())
        sim.append(best.values.numpy())
    return np.concatenate(index), np.concatenate(sim)


def find_duplicates(images: np.ndarray, train: Split, test: Split) -> dict:
    """Exact copies (every byte) and near copies (:data:`NEAR`) of CIFAR-10's training and test images."""
    keys = image_keys(images)
    exact = {"train": np.isin(keys, image_keys(train.images)), "test": np.isin(keys, image_keys(test.images))}
    mine = layout(images)
    near, best = {}, {}
    for name, split in (("train", train), ("test", test)):
        index, sim = nearest(mine, layout(split.images))
        near[name] = sim >= NEAR
        best[name] = (index, sim)
    _, base = nearest(layout(test.images), layout(train.images))  # CIFAR-10's own test set against its training set
    any_exact = exact["train"] | exact["test"]
    any_near = (near["train"] | near["test"]) & ~any_exact
    sim_best = np.maximum(best["train"][1], best["test"][1])
    return {
        "images": len(images),
        "exact": {k: int(v.sum()) for k, v in exact.items()},
        "exact_total": int(any_exact.sum()),
        "near": {k: int((v & ~any_exact).sum()) for k, v in near.items()},
        "near_total": int(any_near.sum()),
        "near_threshold": NEAR,
        "cifar10_test_near_train": float((base >= NEAR).mean()),  # the same measure on CIFAR-10 itself: the baseline
        "similarity_quantiles": {str(q): float(np.quantile(sim_best, q)) for q in (0.05, 0.5, 0.95)}
        if len(sim_best)
        else {},  # fmt: skip
        "_pairs": _pairs(images, train, test, best, any_exact | any_near),
    }


def _pairs(images, train, test, best, flagged, n: int = 8) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Up to ``n`` flagged images beside their closest CIFAR-10 image, for the figure."""
    pairs = []
    for i in np.flatnonzero(flagged)[:n]:
        split = "train" if best["train"][1][i] >= best["test"][1][i] else "test"
        ref = (train if split == "train" else test).images[best[split][0][i]]
        pairs.append((images[i], ref, f"{split} #{best[split][0][i]}"))
    return pairs


# -- what a trained model makes of them --------------------------------------------------------------------


@torch.inference_mode()
def model_view(model: nn.Module, images: np.ndarray, compute: Compute, batch: int = 500) -> dict:
    """Predicted classes, confidences (top softmax probability) and each BatchNorm layer's input mean and
    variance per channel on ``images`` (the model in eval mode, its stored statistics untouched)."""
    norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].float()
            dims = [d for d in range(x.ndim) if d != 1]
            total = sums.setdefault(name, [torch.zeros(x.shape[1], dtype=torch.float64)] * 2 + [0])
            total[0] = total[0] + x.sum(dims).double()
            total[1] = total[1] + (x * x).sum(dims).double()
            total[2] = total[2] + x.numel() // x.shape[1]

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in norms.items()]
    preds, confs = [], []
    try:
        for start in range(0, len(images), batch):
            x = normalize(torch.from_numpy(images[start : start + batch]).to(compute.device))
            with compute.autocast():
                probs = model(x).float().softmax(-1)
            confs.append(probs.max(-1).values.numpy())
            preds.append(probs.argmax(-1).numpy())
    finally:
        for h in handles:
            h.remove()
    moments = {}
    for name, (s, ss, n) in sums.items():
        mean = s / n
        moments[name] = (mean, (ss / n - mean**2).clamp(min=0))
    return {"pred": np.concatenate(preds), "conf": np.concatenate(confs), "moments": moments, "norms": norms}


def bn_shift(norms: dict[str, nn.Module], moments: dict, reference: dict) -> list[dict]:
    """Per BatchNorm layer: the mean over channels of |input mean - stored mean| / stored std, plus half the
    |log| ratio of input to stored variance, here and on CIFAR-10's test images (``reference``)."""

    def distance(m: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> float:
        stored_mean, stored_var = m.running_mean.double(), m.running_var.double() + m.eps
        gap = (mean - stored_mean).abs() / stored_var.sqrt() + 0.5 * ((var + m.eps) / stored_var).log().abs()
        return float(gap.mean())

    rows = []
    for name, m in norms.items():
        if name not in moments or m.running_mean is None:
            continue
        here, ref = distance(m, *moments[name]), distance(m, *reference[name])
        rows.append(
            {"layer": name, "shift": round(here, 4), "reference": round(ref, 4), "excess": round(here - ref, 4)}
        )
    return rows


# -- figures ------------------------------------------------------------------------------------------------------


def plot_stats(ours: dict, ref: dict, name: str, path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    panels = [*STATS, "green"]
    for ax, key in zip(axes.flat, panels):
        a, b = (ours[key], ref[key]) if key in STATS else (
            ours["channel_mean"][:, "rgb".index(key[0])], ref["channel_mean"][:, "rgb".index(key[0])])  # fmt: skip
        bins = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()) + 1e-9, 40)
        ax.hist(b, bins=bins, alpha=0.5, density=True, label="CIFAR-10 test")
        ax.hist(a, bins=bins, alpha=0.5, density=True, label=name)
        ax.set_title(key if key in STATS else f"{key} channel mean")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # and as vector PDF (TrueType fonts), for distill-paper
        fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def plot_grid(images: np.ndarray, path: Path, title: str, n: int = 64) -> None:
    n = min(n, len(images))
    cols = 16
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.4))
    for ax in np.atleast_1d(axes).flat:
        ax.axis("off")
    for ax, img in zip(np.atleast_1d(axes).flat, images[:n]):
        ax.imshow(img)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pairs(pairs: list, path: Path) -> None:
    fig, axes = plt.subplots(2, max(len(pairs), 1), figsize=(1.3 * max(len(pairs), 1), 3), squeeze=False)
    for j, (mine, ref, label) in enumerate(pairs):
        for i, (img, text) in enumerate(((mine, "scored"), (ref, label))):
            axes[i, j].imshow(img)
            axes[i, j].set_title(text, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_model(view: dict, ref: dict, bn: list[dict], name: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    width = 0.4
    for k, (v, label) in enumerate(((ref, "CIFAR-10 test"), (view, name))):
        axes[0].bar(np.arange(10) + (k - 0.5) * width, np.bincount(v["pred"], minlength=10) / len(v["pred"]),
                    width, label=label)  # fmt: skip
        axes[1].hist(v["conf"], bins=np.linspace(0, 1, 26), alpha=0.5, density=True, label=label)
    axes[0].set_xticks(range(10), CLASSES, rotation=60, fontsize=7)
    axes[0].set_title("predicted classes")
    axes[1].set_title("confidence (top softmax probability)")
    axes[0].legend(fontsize=7)
    x = np.arange(len(bn))
    axes[2].bar(x - 0.2, [r["reference"] for r in bn], 0.4, label="CIFAR-10 test")
    axes[2].bar(x + 0.2, [r["shift"] for r in bn], 0.4, label=name)
    axes[2].set_xticks(x, [r["layer"] for r in bn], rotation=90, fontsize=5)
    axes[2].set_title("BatchNorm input vs stored statistics")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- the command ---------------------------------------------------------------------------------------------


def inspect_set(pkl: str | Path, out: str | Path, run: str | Path | None = None, data_dir: str | None = None) -> dict:
    """Inspect the test pickle ``pkl`` against CIFAR-10 (and ``run``'s model); write ``out``; return inspect.json."""
    pkl, out = Path(pkl), Path(out)
    if pkl.is_dir():
        raise UserError(f"{pkl} is a directory; give the test pickle file itself (e.g. cifar_test_nolabel.pkl)")
    if not pkl.is_file():
        raise UserError(f"test pickle not found: {pkl}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give the directory the inspection should go into")
    if out.is_dir() and any(out.iterdir()) and not (out / "inspect.json").is_file():
        raise UserError(f"--out {out} holds other files (no inspect.json); give a new directory or an earlier one's")
    check_writable(out.parent, flag="--out")
    check_distinct(out, [pkl, *([Path(run)] if run else [])], "--out")
    images, _ = load_test_pickle(pkl)
    recipe, model = load_run(run) if run else (None, None)
    train, test = load_cifar10(data_dir or (recipe.data.dir if recipe else DataConfig().dir), download=False)
    ours, ref = image_stats(images), image_stats(test.images)
    stats = compare_stats(ours, ref)
    duplicates = find_duplicates(images, train, test)
    pairs = duplicates.pop("_pairs")
    result = {
        "pickle": str(pkl),
        "images_sha256": images_fingerprint(images),  # which images, whatever the file holding them (the paper checks)
        "images": len(images),
        "channels": {"here": channel_moments(images), "cifar10_test": channel_moments(test.images)},
        "stats": stats,
        "duplicates": duplicates,
    }
    bn, view, ref_view = None, None, None
    if model is not None:
        compute = Compute.resolve(recipe.train.mixed_precision)
        model = model.to(compute.device).eval()
        view, ref_view = model_view(model, images, compute), model_view(model, test.images, compute)
        bn = bn_shift(view["norms"], view["moments"], ref_view["moments"])
        result["model"] = {
            "run": str(run),
            "run_weights_sha256": sha256_file(Path(run) / "model.safetensors"),  # which model read them
            "predicted_classes": dict(zip(CLASSES, np.bincount(view["pred"], minlength=10).tolist())),
            "mean_confidence": float(view["conf"].mean()),
            "cifar10_test_mean_confidence": float(ref_view["conf"].mean()),
            "batchnorm": bn,
        }
    confidence = (result["model"]["mean_confidence"], result["model"]["cifar10_test_mean_confidence"]) if bn else None
    result["reading"] = describe(stats, duplicates, bn, confidence)
    with staged_directory(out, "inspect.swap") as staged:
        plot_stats(ours, ref, pkl.name, staged / "stats.png")
        plot_grid(images, staged / "samples.png", f"{pkl.name}: the first {min(64, len(images))} images")
        if pairs:
            plot_pairs(pairs, staged / "duplicates.png")
        if view is not None:
            plot_model(view, ref_view, bn, pkl.name, staged / "model.png")
        write_json(staged / "inspect.json", result)
        write_atomic(staged / "report.md", report_markdown(result, has_pairs=bool(pairs)))
    print(result["reading"])
    print(f"wrote {out / 'report.md'}, {out / 'inspect.json'} and {len(list(out.glob('*.png')))} figures")
    return result


def report_markdown(result: dict, has_pairs: bool) -> str:
    ch = result["channels"]
    lines = [
        f"# {result['pickle']}: {result['images']:,} images against the CIFAR-10 test set",
        "",
        result["reading"],
        "",
        "| statistic (per image) | mean here | CIFAR-10 test | effect size | spread ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {k} | {d['mean']:.4f} | {d['cifar10_test_mean']:.4f} | {d['effect_size']:+.2f} | {d['spread_ratio']:.2f} |"
            for k, d in result["stats"].items()
        ),
        f"| channel means (R, G, B) | {', '.join(f'{v:.3f}' for v in ch['here']['mean'])} | "
        f"{', '.join(f'{v:.3f}' for v in ch['cifar10_test']['mean'])} | | |",
        f"| channel stds (R, G, B) | {', '.join(f'{v:.3f}' for v in ch['here']['std'])} | "
        f"{', '.join(f'{v:.3f}' for v in ch['cifar10_test']['std'])} | | |",
        "",
        "Effect size: the difference of the means over CIFAR-10's standard deviation of the statistic; spread ratio: "
        "the ratio of the standard deviations.",
        "",
        "![statistics](stats.png)",
        "",
        "## Duplicates of CIFAR-10 images",
        "",
        f"Exact copies: {result['duplicates']['exact']['test']:,} of test images, {result['duplicates']['exact']['train']:,} "
        f"of training images. Near copies (the same 8x8 luminance layout, cosine similarity >= {NEAR}), besides: "
        f"{result['duplicates']['near']['test']:,} of test, {result['duplicates']['near']['train']:,} of training images. "
        f"For comparison, {result['duplicates']['cifar10_test_near_train']:.1%} of CIFAR-10's test images lie that near "
        f"one of its training images.",
        "",
        *(["![duplicates](duplicates.png)", ""] if has_pairs else []),
        "![samples](samples.png)",
    ]
    if "model" in result:
        m = result["model"]
        lines += [
            "",
            f"## What {m['run']} makes of them",
            "",
            f"Mean confidence {m['mean_confidence']:.3f} (CIFAR-10 test: {m['cifar10_test_mean_confidence']:.3f}). "
            "Predicted classes: " + ", ".join(f"{k} {v:,}" for k, v in m["predicted_classes"].items()) + ".",
            "",
            "| BatchNorm layer | distance here | on CIFAR-10 test |",
            "| --- | ---: | ---: |",
            *(f"| {r['layer']} | {r['shift']:.3f} | {r['reference']:.3f} |" for r in m["batchnorm"]),
            "",
            "![model](model.png)",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="How the images of a test pickle differ from CIFAR-10's: statistics, duplicates, and (with --run) "
        "what a trained model makes of them."
    )
    parser.add_argument("pickle", help="the unlabelled test pickle (e.g. cifar_test_nolabel.pkl)")
    parser.add_argument(
        "--run", help="a finished run directory: its predictions and BatchNorm statistics on the images"
    )
    parser.add_argument("--out", default="inspect", help="the output directory (default: inspect)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (default: the run's data.dir, else data)")
    args = parser.parse_args(argv)
    return inspect_set(args.pickle, args.out, args.run, args.data_dir)


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
