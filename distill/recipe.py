"""Recipes: plain YAML files mapped onto typed dataclasses.

``load_recipe("kd_t4", ["train.epochs=5"])`` reads ``recipes/kd_t4.yaml``, applies the dotted
overrides and returns a :class:`Recipe`. An unknown key, in the file or in an override, is a
:class:`~distill.errors.UserError` naming it; an override is parsed as YAML and checked against
the field's type (``train.lr=abc`` fails, ``train.lr=1`` becomes ``1.0``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from distill.augment import POLICIES, AugmentSpec, TTASpec
from distill.data import DataConfig
from distill.errors import UserError
from distill.losses import LOSSES
from distill.precision import NS_SETTINGS as NS_PRECISIONS
from distill.precision import SETTINGS as PRECISIONS

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does: ``1e-12`` is a float, not the string PyYAML's
    YAML 1.1 rules make of an exponent without a dot, which no type check would catch in ``model.kwargs``."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


@dataclass
class ModelConfig:
    name: str = "cifar_resnet_s"  # a timm registry name from teachers/ or students/
    kwargs: dict = field(default_factory=dict)  # passed to timm.create_model


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 512  # global batch, split over processes
    lr: float = 0.2  # peak learning rate for batch_size
    lr_min: float = 0.0  # end of the decay
    schedule: str = "cosine"  # "cosine" or "linear" decay after warm-up (timm schedulers)
    warmup_epochs: float = 1.0  # linear warm-up to lr, in epochs (fractions allowed)
    warmup_from: float = 1e-3  # the LR at the start of warm-up, as a fraction of lr (airbench: 0.2)
    optimizer: str = "sgd"  # Nesterov SGD; "adamw"; "muon": Muon on conv filters, SGD on the rest (airbench94_muon)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on conv/linear weights (and, without filter_bias_and_bn, on everything)
    filter_bias_and_bn: bool = True  # timm's default: no weight decay on biases and norm parameters
    norm_bias_lr_scale: float = 1.0  # LR multiplier of BatchNorm biases (airbench: 64)
    muon_lr: float = 0.24  # optimizer=muon: the filters' peak LR (scheduled with lr; airbench94_muon: 0.24)
    muon_momentum: float = 0.6  # ... their momentum (Nesterov when nesterov is set; airbench94_muon: 0.6)
    muon_ns_steps: int = 3  # ... Newton-Schulz iterations of the orthogonalisation (airbench94_muon: 3)
    muon_normalize: bool = True  # ... each filter bank scaled to norm sqrt(out) before its step (airbench94_muon)
    muon_weight_decay: float = 0.0  # ... Muon's decoupled decay of the filters (0 with muon_normalize)
    muon_ns_precision: str = "auto"  # ... its Newton-Schulz in bf16 (PyTorch's) or fp32; auto: fp32 if bf16 is emulated
    label_smoothing: float = 0.0
    lookahead: bool = False  # wrap the optimiser in timm's Lookahead: every k steps slow += alpha (fast - slow)
    lookahead_k: int = 6
    lookahead_alpha: float = 0.5  # the slow weights' step; with lookahead_ramp, its value at the end
    lookahead_ramp: float = 0.0  # > 0: alpha falls from 1 to lookahead_alpha as (step / total)^ramp (airbench: 3)
    ema_decay: float = 0.0  # >0 keeps timm ModelEmaV3 weights, evaluated and saved instead of the raw ones
    mixed_precision: str = "auto"  # auto: bf16 on a GPU or a CPU with native bf16, else fp32; or no / bf16 / fp16
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (default mode)
    progressive_min_size: int = 0  # progressive resizing: train from this resolution up to 32 (0 = off)
    progressive_until: float = 0.5  # ... reaching 32 at this fraction of the epochs
    # < 1: after select_after full epochs, each epoch trains on this fraction of the images, those with the
    # highest loss when last trained on plus a random share (distill.engine.Hardness), in as many steps as a full
    # epoch (smaller batches); an epoch then costs about this fraction of a full one
    select_fraction: float = 1.0
    select_after: int = 2  # ... full epochs first (every image's loss is recorded in them)
    select_random: float = 0.25  # ... the share of each selecting epoch's images drawn at random from the rest
    # > 0: the whitening stem's bias trains for this many epochs, then stays as it is (airbench: 3), so that nothing
    # before the first trainable conv needs a gradient and its input gradient is skipped; 0: it trains throughout
    whiten_bias_epochs: int = 0
    eval_batch_size: int = 1024
    eval_every: int = 1  # evaluate on the test set every N epochs (and always after the last)
    checkpoint_every: int = 1  # save the Accelerate state every N epochs for --resume
    log_with: str = "none"  # "tensorboard": each epoch's loss, accuracy, LR and img/s also into RUN/tb/ (offline)


@dataclass
class KDConfig:
    temperature: float = 4.0  # T: softens both distributions (kl, dkd; DIST's tau)
    alpha: float = 0.9  # weight of the KD term; (1 - alpha) weights the cross-entropy; 0 = plain CE
    # the whole loss times this when distilling (1 / T keeps the KL term's gradient, alpha T (p_s - p_t), as large
    # as a cross-entropy's under an optimiser tuned to one; docs/recipes.md, "Losses"); labels-only runs are not scaled
    loss_scale: float = 1.0
    loss: str = "kl"  # the KD term: kl (Hinton), kl_std, dkd, dkd_std, dist (distill.losses; docs/recipes.md, "Losses")
    std_temperature: float = 2.0  # kl_std / dkd_std: the base temperature on z-scored logits (Sun et al. 2024)
    std_weight: float = 10.0  # kl_std / dkd_std: the term's weight (with alpha 0.9: CE 0.1, KD 9, the paper's)
    dkd_alpha: float = 1.0  # dkd: weight of TCKD, the target-vs-rest KL (Zhao et al. 2022)
    dkd_beta: float = 8.0  # dkd: weight of NCKD, the KL among the non-target classes
    dkd_warmup: float = 0.0833  # dkd: the term rises from 0 over this fraction of the run (the paper's 20 of 240)
    dist_beta: float = 2.0  # dist: weight of the inter-class relation (Huang et al. 2022, CIFAR-100)
    dist_gamma: float = 2.0  # dist: weight of the intra-class relation
    teacher: str = ""  # the teacher recipe this student is meant for (what distill-run trains first)
    teacher_seeds: int = 1  # ... as an ensemble of this many seeds, whose mean logits are cached
    # A transfer set: unlabelled images (test pickles or (N, 32, 32, 3) uint8 .npy files) that the cache
    # holds the teacher's logits of and the student distils on too (KD only, no CE); see distill.data.
    unlabeled: list[str] = field(default_factory=list)


@dataclass
class CacheConfig:
    views: int = 8  # K augmented view sets; 0 = logits of the un-augmented images only
    batch_size: int = 1024  # teacher inference batch while caching
    seed: int = 0  # seeds the views' augmentation parameters


@dataclass
class Recipe:
    name: str = "unnamed"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentSpec = field(default_factory=AugmentSpec)  # defined in distill.augment
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    tta: TTASpec = field(default_factory=lambda: TTASpec(flip=True))  # at the final evaluation and in export.py

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's type, widening int to float; raise UserError on mismatch."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in typing.get_args(hint):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(value, arm, key)
            except UserError as err:
                errors.append(err)
        raise errors[0] if errors else UserError(f"recipe key '{key}' must be set")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"recipe key '{key}' must be a finite number, got {value}")  # inf / nan train as if set
    if origin is list:  # a list of strings (kd.unlabeled); one string is a list of one
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"recipe key '{key}' must be a list of paths, got {value!r}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"recipe key '{key}' must be a mapping, got {value!r}")
        return value
    if hint is str and isinstance(value, bool):  # YAML 1.1 reads a bare no / off / false as False
        return "no" if not value else "yes"  # (train.mixed_precision=no is what a user types)
    if hint is int and isinstance(value, bool):
        raise UserError(f"recipe key '{key}' must be an int, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise UserError(f"recipe key '{key}' must be {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise UserError(f"recipe section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise UserError(f"unknown recipe key '{path}' (known keys here: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{path}.")
        else:
            kwargs[key] = _check_value(value, hint, path)
    return cls(**kwargs)


def _set_override(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c=value`` in a nested dict; dict-typed fields (model.kwargs) accept new keys."""
    node, cls = tree, Recipe
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        hints = _field_types(cls) if cls is not None else None
        if hints is not None and part not in hints:
            raise UserError(f"unknown recipe key '{'.'.join(parts[: i + 1])}' in override '{dotted}={value}'")
        hint = hints[part] if hints is not None else None
        cls = hint if dataclasses.is_dataclass(hint) else None
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"recipe key '{'.'.join(parts[: i + 1])}' is not a section")
    if cls is not None and parts[-1] not in _field_types(cls):
        raise UserError(f"unknown recipe key '{dotted}' in override '{dotted}={value}'")
    node[parts[-1]] = value


def flat_fields(tree: dict[str, Any], prefix: str = "", open_kwargs: bool = False) -> dict[str, Any]:
    """A recipe's fields (its ``to_dict()``) as ``section.key`` -> value. ``model.kwargs``, a mapping of free keys,
    stays one value unless ``open_kwargs``, which names each of its keys too (``model.kwargs.act``)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and (key != "kwargs" or open_kwargs):
            flat.update(flat_fields(value, f"{prefix}{key}.", open_kwargs))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_recipe_path(name_or_path: str) -> Path:
    """``kd_t4`` -> ``recipes/kd_t4.yaml``; anything with a suffix or a slash is a path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and "/" not in name_or_path:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
        raise UserError(f"recipe '{name_or_path}' not found at {path}; use a path or one of: {available}")
    return path


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' is not key=value (for example train.epochs=5)")
        try:
            value = _load_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file and apply ``key=value`` overrides; see the module docstring."""
    path = resolve_recipe_path(str(name_or_path))
    try:
        tree = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise UserError(f"recipe {path} must be a mapping of sections")
    tree.setdefault("name", path.stem)
    return recipe_from_dict(tree, overrides)


def _upgrade(tree: dict[str, Any]) -> dict[str, Any]:
    """Read recipes written before TTA had its own section (``train.tta``, ``train.tta_translate``), so that
    older run dirs still load (export, evaluate, cache_logits, --resume)."""
    train = tree.get("train")
    if isinstance(train, dict) and ("tta" in train or "tta_translate" in train) and "tta" not in tree:
        tree["tta"] = {"flip": train.pop("tta", True), "translate": train.pop("tta_translate", 0)}
    return tree


def recipe_from_dict(tree: dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    tree = _upgrade(yaml.safe_load(yaml.safe_dump(tree)))  # a deep copy of plain values
    for key, value in parse_overrides(overrides or []):
        _set_override(tree, key, value)
    recipe = _build(Recipe, tree)
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Check value ranges that types alone cannot express."""
    train = recipe.train
    checks = [
        (train.epochs >= 1, "train.epochs must be >= 1"),
        (train.batch_size >= 1, "train.batch_size must be >= 1"),
        (train.lr > 0, "train.lr must be > 0"),
        (0.0 <= train.warmup_from <= 1.0, "train.warmup_from must be in [0, 1]"),
        (train.norm_bias_lr_scale > 0, "train.norm_bias_lr_scale must be > 0"),
        (
            train.lookahead_k >= 1 and 0.0 < train.lookahead_alpha <= 1.0,
            "train.lookahead_k >= 1, lookahead_alpha in (0, 1]",
        ),
        (train.lookahead_ramp >= 0, "train.lookahead_ramp must be >= 0"),
        (train.schedule in ("cosine", "linear"), "train.schedule must be 'cosine' or 'linear'"),
        (train.optimizer in ("sgd", "adamw", "muon"), "train.optimizer must be 'sgd', 'adamw' or 'muon'"),
        (train.muon_lr > 0 and 0.0 <= train.muon_momentum < 1.0, "train.muon_lr must be > 0, muon_momentum in [0, 1)"),
        (1 <= train.muon_ns_steps <= 10, "train.muon_ns_steps must be in 1..10 (airbench94_muon: 3)"),
        (train.muon_weight_decay >= 0, "train.muon_weight_decay must be >= 0"),
        (
            train.muon_ns_precision in NS_PRECISIONS,
            f"train.muon_ns_precision must be one of {', '.join(NS_PRECISIONS)}",
        ),
        (train.log_with in ("none", "tensorboard"), "train.log_with must be 'none' or 'tensorboard'"),
        (train.mixed_precision in PRECISIONS, f"train.mixed_precision must be one of {', '.join(PRECISIONS)}"),
        (0.0 <= train.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
        (0.0 <= train.label_smoothing < 1.0, "train.label_smoothing must be in [0, 1)"),
        (0.0 <= recipe.kd.alpha <= 1.0, "kd.alpha must be in [0, 1]"),
        (recipe.kd.temperature > 0, "kd.temperature must be > 0"),
        (recipe.kd.loss_scale > 0, "kd.loss_scale must be > 0"),
        (recipe.kd.loss in LOSSES, f"kd.loss must be one of {', '.join(LOSSES)}"),
        (recipe.kd.std_temperature > 0 and recipe.kd.std_weight >= 0, "kd.std_temperature > 0, kd.std_weight >= 0"),
        (
            min(recipe.kd.dkd_alpha, recipe.kd.dkd_beta, recipe.kd.dist_beta, recipe.kd.dist_gamma) >= 0,
            "kd.dkd_alpha, kd.dkd_beta, kd.dist_beta and kd.dist_gamma must be >= 0",
        ),
        (0.0 <= recipe.kd.dkd_warmup <= 1.0, "kd.dkd_warmup must be in [0, 1] (a fraction of the run)"),
        (recipe.kd.teacher_seeds >= 1, "kd.teacher_seeds must be >= 1"),
        (recipe.cache.views >= 0, "cache.views must be >= 0"),
        (0 <= recipe.augment.translate <= 16, "augment.translate must be in 0..16 pixels"),
        (0 <= recipe.augment.cutout <= 32, "augment.cutout must be in 0..32 pixels"),
        (recipe.augment.policy in POLICIES, f"augment.policy must be one of {', '.join(POLICIES)}"),
        (recipe.augment.mixup_alpha >= 0 and recipe.augment.cutmix_alpha >= 0, "augment.*_alpha must be >= 0"),
        (
            0 <= recipe.augment.mix_prob <= 1 and 0 <= recipe.augment.cutmix_switch_prob <= 1,
            "augment.mix_prob and augment.cutmix_switch_prob must be in [0, 1]",
        ),
        (0 <= recipe.tta.translate <= 4, "tta.translate must be in 0..4 pixels"),
        (recipe.data.val_size >= 0, "data.val_size must be >= 0"),
        (
            not recipe.data.train_on_test or recipe.data.val_size > 0,
            "data.train_on_test=true trains on the test split, which leaves only a held-out split to measure the run "
            "on: set data.val_size (e.g. 5000)",
        ),
        (
            train.progressive_min_size == 0 or 8 <= train.progressive_min_size <= 32,
            "train.progressive_min_size: 0 or 8..32",
        ),
        (0.0 < train.progressive_until <= 1.0, "train.progressive_until must be in (0, 1]"),
        (0.0 < train.select_fraction <= 1.0, "train.select_fraction must be in (0, 1] (1 trains on every image)"),
        (train.select_after >= 1, "train.select_after must be >= 1 (an epoch on every image records their losses)"),
        (0.0 <= train.select_random <= 1.0, "train.select_random must be in [0, 1]"),
        (train.whiten_bias_epochs >= 0, "train.whiten_bias_epochs must be >= 0 (0: the bias trains throughout)"),
        (
            not recipe.augment.alternate_flip or recipe.cache.views % 2 == 0,
            "cache.views must be even with augment.alternate_flip (view sets alternate like epochs)",
        ),
        (recipe.data.train_limit is None or recipe.data.train_limit >= 1, "data.train_limit must be >= 1"),
        (recipe.data.test_limit is None or recipe.data.test_limit >= 1, "data.test_limit must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"bad recipe value: {message}")


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
