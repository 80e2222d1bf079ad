import re
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.recipe import RECIPE_DIR, load_recipe

REQUIRED = ["teacher", "ce", "kd_t4", "kd_t2", "teacher_smoke", "kd_smoke", "ce_smoke"]


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
def test_every_recipe_loads(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.train.epochs >= 1


def test_required_recipes_exist():
    assert set(REQUIRED) <= {p.stem for p in RECIPE_DIR.glob("*.yaml")}
    assert load_recipe("kd_t4").kd.temperature == 4.0
    assert load_recipe("kd_t2").kd.temperature == 2.0
    assert load_recipe("ce").kd.alpha == 0.0


def test_overrides_are_typed():
    r = load_recipe(
        "kd_t4",
        [
            "train.epochs=3",
            "train.lr=1",
            "kd.alpha=0.5",
            "data.train_limit=100",
            "model.kwargs.widths=[8,16,32,32]",
            "train.compile=true",
        ],
    )
    assert (r.train.epochs, r.train.lr, r.kd.alpha, r.data.train_limit) == (3, 1.0, 0.5, 100)
    assert isinstance(r.train.lr, float)
    assert r.model.kwargs == {"widths": [8, 16, 32, 32]}
    assert r.train.compile is True
    assert load_recipe("kd_t4", ["data.test_limit=null"]).data.test_limit is None
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float field still takes it
    assert load_recipe("kd_t4", ["train.lr=1e-3", "train.weight_decay=5e-4"]).train.lr == 1e-3


def test_exponents_without_a_dot_are_floats_where_no_type_checks_them(tmp_path: Path):
    """model.kwargs is a free mapping: ``1e-12`` must arrive as a float there, in an override or a file."""
    r = load_recipe("kd_fast94_lite", ["model.kwargs.bn_eps=1e-12", "model.kwargs.logit_scale=.5", "model.kwargs.n=3"])
    assert r.model.kwargs == {"whiten": True, "bn_eps": 1e-12, "logit_scale": 0.5, "n": 3}
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  name: cifar_resnet_tiny\n  kwargs:\n    bn_eps: 1E+2\n    tag: 1e3x\n")
    assert load_recipe(str(path)).model.kwargs == {"bn_eps": 100.0, "tag": "1e3x"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown recipe key 'train.epoch'"),
        ("nosuch.thing=1", "unknown recipe key 'nosuch'"),
        ("train.epochs=abc", "train.epochs' must be int"),
        ("train.epochs=2.5", "train.epochs' must be int"),
        ("tta.flip=maybe", "tta.flip' must be bool"),
        ("train.lr=fast", "train.lr' must be float"),
        ("kd.alpha=2", "kd.alpha must be in [0, 1]"),
        ("kd.loss_scale=0", "kd.loss_scale must be > 0"),
        ("train.select_fraction=0", "train.select_fraction must be in (0, 1]"),
        ("train.select_fraction=1.5", "train.select_fraction must be in (0, 1]"),
        ("train.select_after=0", "train.select_after must be >= 1"),
        ("train.select_random=-0.1", "train.select_random must be in [0, 1]"),
        ("train.whiten_bias_epochs=-1", "train.whiten_bias_epochs must be >= 0"),
        ("train.epochs", "is not key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_recipe("kd_t4", [override])


def test_unknown_key_in_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown recipe key 'train.learning_rate'"):
        load_recipe(path)


def test_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(UserError, match="kd_t4"):
        load_recipe("no_such_recipe")


def test_alternate_flip_needs_an_even_number_of_cached_view_sets():
    assert load_recipe("kd_t4", ["augment.alternate_flip=true"]).augment.alternate_flip
    with pytest.raises(UserError, match="cache.views must be even"):
        load_recipe("kd_t4", ["augment.alternate_flip=true", "cache.views=3"])


def student_recipes() -> list[str]:
    from distill.recipe import RECIPE_DIR

    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml") if load_recipe(p.stem).kd.teacher)


def test_every_distilling_recipe_names_its_teacher():
    assert {"kd_t4", "kd_fast94", "kd_fast96", "kd_max", "kd_smoke"} <= set(student_recipes())
    for name in ("ce", "ce_smoke"):
        assert load_recipe(name).kd.alpha == 0  # labels only: no teacher needed


@pytest.mark.parametrize("name", student_recipes())
def test_student_recipe_fits_the_cache_of_its_teacher(name):
    """The cache of kd.teacher (its own, or one built on the student's views) is one this student accepts:
    the same training images and held-out split; the views' spec and count are the student's."""
    student = load_recipe(name)
    teacher = load_recipe(student.kd.teacher)
    assert student.kd.alpha > 0 and student.kd.teacher_seeds >= 1
    assert student.data == teacher.data  # the cache's fingerprint is over the same images
    if (student.augment, student.cache.views) != (teacher.augment, teacher.cache.views):
        # a cache on the student's views: the teacher's recipe with the student's augment and cache sections
        assert name in {"kd_fast94", "kd_fast94_lite", "kd_max", "kd_fast96", "kd_fast95"}, (
            f"{name} needs a cache on its own views"
        )


def test_the_smoke_pair_shares_the_teachers_own_cache():
    student, teacher = load_recipe("kd_smoke"), load_recipe("teacher_smoke")
    assert (student.augment, student.cache.views) == (teacher.augment, teacher.cache.views)
    assert load_recipe("kd_fast94").augment == load_recipe("teacher_94").augment  # teacher_94's cache fits


def test_recipes_of_older_runs_still_load(tmp_path):
    """A run dir written before TTA had its own section: train.tta / train.tta_translate become tta.*."""
    old = tmp_path / "recipe.yaml"
    old.write_text("name: old\ntrain:\n  epochs: 3\n  tta: true\n  tta_translate: 1\n")
    recipe = load_recipe(old)
    assert (recipe.tta.flip, recipe.tta.translate, recipe.train.epochs) == (True, 1, 3)
