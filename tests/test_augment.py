import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from distill.augment import (
    MAG_BINS,
    POLICY_OPS,
    AugmentSpec,
    TTASpec,
    apply_policy,
    apply_views,
    mix_targets,
    normalize,
    sample_views,
    shift,
    view_keys,
)
from distill.engine import tta_logits
from tests.conftest import synthetic_split


def reference(image: np.ndarray, dy: int, dx: int, flip: bool, cy: int, cx: int, spec: AugmentSpec) -> np.ndarray:
    """Per-image textbook version: reflect-pad, crop, flip, normalise, cut out."""
    p = spec.translate
    padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
    crop = padded[p + dy : p + dy + 32, p + dx : p + dx + 32]
    if flip:
        crop = crop[:, ::-1]
    x = normalize(torch.from_numpy(np.ascontiguousarray(crop))[None], channels_last=False)[0].numpy()
    if spec.cutout:
        top, left = cy - spec.cutout // 2, cx - spec.cutout // 2
        x[:, max(top, 0) : max(top + spec.cutout, 0), max(left, 0) : max(left + spec.cutout, 0)] = 0
    return x


def all_views(images: np.ndarray, views: dict, spec: AugmentSpec) -> torch.Tensor:
    return apply_views(torch.from_numpy(images), views, torch.arange(len(images)), spec)


@pytest.mark.parametrize(
    "spec", [AugmentSpec(translate=4), AugmentSpec(translate=2, cutout=8), AugmentSpec(translate=0, flip=False)]
)
def test_apply_views_matches_per_image_reference(spec):
    split = synthetic_split(16, 0)
    views = sample_views(16, spec, torch.Generator().manual_seed(1))
    out = all_views(split.images, views, spec).numpy()
    for i in range(16):
        v = {k: int(views[k][i]) if k in views else 0 for k in ("dy", "dx", "flip", "cy", "cx")}
        np.testing.assert_array_equal(
            out[i], reference(split.images[i], v["dy"], v["dx"], bool(v["flip"]), v["cy"], v["cx"], spec)
        )


def test_views_are_deterministic_and_in_range():
    spec = AugmentSpec(translate=4, cutout=8, policy="trivial", mixup_alpha=0.2, cutmix_alpha=1.0)
    a = sample_views(1000, spec, torch.Generator().manual_seed(3))
    b = sample_views(1000, spec, torch.Generator().manual_seed(3))
    assert set(a) == set(view_keys(spec)) and all(torch.equal(a[k], b[k]) for k in a)
    assert a["dx"].min() == -4 and a["dx"].max() == 4
    assert 0.4 < a["flip"].float().mean() < 0.6
    assert set(a["op"].tolist()) == set(range(len(POLICY_OPS)))
    assert a["mag"].abs().max() == MAG_BINS and (a["mag"] < 0).any()
    assert not sample_views(100, AugmentSpec(translate=4, flip=False), torch.Generator())["flip"].any()
    assert set(view_keys(AugmentSpec())) == {"dy", "dx", "flip"}  # a plain spec stores no unused parameters


def test_spec_label_names_what_is_on():
    assert AugmentSpec().label == "translate 4, flip"
    assert AugmentSpec(translate=0, flip=False).label == "none"
    spec = AugmentSpec(2, True, True, 8, "trivial", mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5)
    assert spec.label == "translate 2, alternate flip, trivial, cutout 8, mixup 0.2 / cutmix 1 p 0.5"
    assert AugmentSpec(cutmix_alpha=1.0, mix_prob=0.0).label == "translate 4, flip"  # never mixes


def test_mixing_parameters():
    n = 4000
    spec = AugmentSpec(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.8, cutmix_switch_prob=0.5)
    v = sample_views(n, spec, torch.Generator().manual_seed(0))
    own = torch.arange(n, dtype=torch.int32)
    mixed = v["lam"] < 1
    cut = v["bh"] > 0
    assert 0.7 < (v["partner"] != own).float().mean() < 0.9  # mix_prob (a few draw themselves or lam = 1)
    assert (v["lam"][v["partner"] == own] == 1).float().mean() > 0.95  # the unmixed (and a rare fixed point)
    assert mixed.float().mean() > 0.7
    assert 0.3 < cut.float().mean() < 0.5  # half of the mixed ones
    area = (v["bh"].double() * v["bw"].double())[cut]
    torch.testing.assert_close(v["lam"][cut].double(), 1 - area / 1024, atol=1e-6, rtol=0)  # lam = the box's share
    assert ((v["lam"] >= 0) & (v["lam"] <= 1)).all()
    assert (v["by"].long() + v["bh"].long() <= 32).all() and (v["bx"].long() + v["bw"].long() <= 32).all()


def test_mixup_and_cutmix_pixels_and_targets():
    split = synthetic_split(8, 2)
    images, labels = torch.from_numpy(split.images), torch.from_numpy(split.labels)
    plain = AugmentSpec(translate=0, flip=False)
    spec = AugmentSpec(translate=0, flip=False, mixup_alpha=1.0, cutmix_alpha=1.0)
    views = {k: torch.zeros(8, dtype=torch.int8) for k in ("dy", "dx")} | {"flip": torch.zeros(8, dtype=torch.bool)}
    views |= {
        "partner": torch.tensor([1, 0, 2, 3, 4, 5, 6, 7], dtype=torch.int32),
        "lam": torch.tensor([0.25, 0.75, 1, 1, 1, 1, 1, 1]),
        "by": torch.tensor([0, 4, 0, 0, 0, 0, 0, 0], dtype=torch.uint8),
        "bx": torch.tensor([0, 8, 0, 0, 0, 0, 0, 0], dtype=torch.uint8),
        "bh": torch.tensor([0, 16, 0, 0, 0, 0, 0, 0], dtype=torch.uint8),
        "bw": torch.tensor([0, 16, 0, 0, 0, 0, 0, 0], dtype=torch.uint8),
    }
    x = apply_views(images, views, torch.arange(8), spec)
    base = normalize(images)
    torch.testing.assert_close(x[0], 0.25 * base[0] + 0.75 * base[1])  # mixup: a blend
    expected = base[1].clone()
    expected[:, 4:20, 8:24] = base[0][:, 4:20, 8:24]  # cutmix: the partner's pixels in the box
    assert torch.equal(x[1], expected)
    assert torch.equal(x[2:], apply_views(images, views, torch.arange(8), plain)[2:])  # unmixed images
    partner_labels, lam = mix_targets(labels, views, torch.tensor([1, 0]))
    assert partner_labels.tolist() == labels[[0, 1]].tolist() and lam.tolist() == [0.75, 0.25]
    assert mix_targets(labels, {"dy": views["dy"]}, torch.arange(2)) == (None, None)


def _pil_op(name: str, img: Image.Image, m: float) -> Image.Image:
    """PIL's version of a photometric op at signed magnitude fraction m of the "trivial" space."""
    factor = 1 + m * 0.9
    return {
        "brightness": lambda: ImageEnhance.Brightness(img).enhance(factor),
        "color": lambda: ImageEnhance.Color(img).enhance(factor),
        "contrast": lambda: ImageEnhance.Contrast(img).enhance(factor),
        "sharpness": lambda: ImageEnhance.Sharpness(img).enhance(factor),
        "posterize": lambda: ImageOps.posterize(img, 8 - round(abs(m) * 4)),
        "solarize": lambda: ImageOps.solarize(img, round(256 * (1 - abs(m)))),
        "autocontrast": lambda: ImageOps.autocontrast(img),
        "equalize": lambda: ImageOps.equalize(img),
    }[name]()


@pytest.mark.parametrize(
    "name", ["brightness", "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize"]
)
def test_photometric_ops_match_pil(name):
    split = synthetic_split(12, 4)
    split.images[:, :, :, 1] //= 2  # less saturated colours, so the ops have room to act
    mags = torch.tensor([-30, -21, -12, -5, 0, 3, 9, 15, 20, 24, 28, 30], dtype=torch.int8)
    ops = torch.full((12,), POLICY_OPS.index(name), dtype=torch.uint8)
    out = apply_policy(torch.from_numpy(split.images), ops, mags, "trivial").numpy()
    for i in range(12):
        want = np.asarray(_pil_op(name, Image.fromarray(split.images[i]), int(mags[i]) / MAG_BINS))
        diff = np.abs(out[i].astype(int) - want.astype(int))
        # autocontrast is torchvision's, which rounds its scale differently from PIL
        assert diff.max() <= 1 and (diff > 0).mean() < (0.1 if name == "autocontrast" else 0.001), (name, int(mags[i]))


def _warp_reference(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Nearest-neighbour affine warp about the centre, one pixel at a time."""
    out = np.full_like(image, 128)
    c = 15.5
    for i in range(32):
        for j in range(32):
            sy = np.round(np.float32(matrix[0] * (i - c) + matrix[1] * (j - c) + matrix[2] + c))
            sx = np.round(np.float32(matrix[3] * (i - c) + matrix[4] * (j - c) + matrix[5] + c))
            if 0 <= sy < 32 and 0 <= sx < 32:
                out[i, j] = image[int(sy), int(sx)]
    return out


@pytest.mark.parametrize("name", ["shear_x", "shear_y", "translate_x", "translate_y", "rotate"])
def test_geometric_ops_are_the_documented_warps(name):
    split = synthetic_split(4, 5)
    mags = torch.tensor([-30, -7, 13, 30], dtype=torch.int8)
    out = apply_policy(
        torch.from_numpy(split.images), torch.full((4,), POLICY_OPS.index(name), dtype=torch.uint8), mags, "trivial"
    ).numpy()
    for i, m in enumerate((mags.float() / MAG_BINS).tolist()):
        theta = np.radians(30 * m)
        matrix = {
            "shear_x": [1, 0, 0, 0.3 * m, 1, 0],
            "shear_y": [1, 0.3 * m, 0, 0, 1, 0],
            "translate_x": [1, 0, 0, 0, 1, 10 * m],
            "translate_y": [1, 0, 10 * m, 0, 1, 0],
            "rotate": [np.cos(theta), -np.sin(theta), 0, np.sin(theta), np.cos(theta), 0],
        }[name]
        want = _warp_reference(split.images[i], np.array(matrix, dtype=np.float32))
        assert (out[i] != want).any(-1).mean() < 0.01  # float32 rounding of a coordinate may pick a neighbour
    assert not np.array_equal(out[3], split.images[3])


def test_policy_is_independent_of_the_batch():
    """An image's view is the same alone or in any batch: what makes cached views replayable."""
    split = synthetic_split(40, 6)
    spec = AugmentSpec(translate=2, cutout=6, policy="trivial_wide", mixup_alpha=0.5, cutmix_alpha=1.0)
    views = sample_views(40, spec, torch.Generator().manual_seed(9))
    images = torch.from_numpy(split.images)
    whole = apply_views(images, views, torch.arange(40), spec)
    for index in (torch.tensor([7]), torch.tensor([39, 3, 12]), torch.randperm(40)[:17]):
        assert torch.equal(apply_views(images, views, index, spec), whole[index])


def test_output_is_channels_last_float():
    spec = AugmentSpec(policy="trivial")
    x = apply_views(
        torch.zeros(2, 32, 32, 3, dtype=torch.uint8), sample_views(2, spec, torch.Generator()), torch.arange(2), spec
    )
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_shift_is_a_reflect_padded_translation():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    for dy, dx in [(1, 1), (-1, -1), (2, -1), (0, 0)]:
        p = 2
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
        expected = padded[:, :, p + dy : p + dy + 32, p + dx : p + dx + 32]
        np.testing.assert_array_equal(shift(x, dy, dx).numpy(), expected)


@pytest.mark.parametrize("tta", [None, TTASpec(flip=True), TTASpec(translate=1), TTASpec(flip=True, translate=1)])
def test_tta_averages_the_documented_views(tta):
    x = torch.randn(4, 3, 32, 32)
    weights = torch.randn(3 * 32 * 32, 10)
    model = lambda v: v.reshape(len(v), -1) @ weights  # noqa: E731  (linear: the average is exact)

    def mirrored(v):
        return 0.5 * (model(v) + model(torch.flip(v, dims=[3]))) if tta is not None and tta.flip else model(v)

    expected = mirrored(x)
    if tta is not None and tta.translate:
        expected = 0.5 * expected + 0.25 * (mirrored(shift(x, -1, -1)) + mirrored(shift(x, 1, 1)))
    torch.testing.assert_close(tta_logits(model, x, tta), expected)
    calls = []
    tta_logits(lambda v: calls.append(1) or model(v), x, tta)
    assert len(calls) == (tta.forward_passes if tta else 1)


def test_alternate_flip_shows_each_image_both_ways():
    spec = AugmentSpec(translate=4, alternate_flip=True)
    views = [sample_views(500, spec, torch.Generator().manual_seed(10 + i), index=i, seed=3) for i in range(3)]
    assert torch.equal(views[1]["flip"], ~views[0]["flip"])  # consecutive epochs: the other way round
    assert torch.equal(views[2]["flip"], views[0]["flip"])
    assert 0.4 < views[0]["flip"].float().mean() < 0.6
    assert not torch.equal(views[0]["dy"], views[2]["dy"])  # translations stay fresh
    other_seed = sample_views(500, spec, torch.Generator().manual_seed(10), index=0, seed=4)
    assert not torch.equal(other_seed["flip"], views[0]["flip"])


def test_progressive_resizing_schedule():
    from distill.engine import epoch_resolution

    sizes = [epoch_resolution(e, 10, 16, 0.5) for e in range(10)]
    assert sizes == [16, 16, 20, 24, 28, 32, 32, 32, 32, 32]  # rising to 32 at half the epochs, multiples of 4
    assert {epoch_resolution(e, 10, 0, 0.5) for e in range(10)} == {32}  # off


def test_progressive_resizing_trains_at_the_scheduled_resolution(synthetic_dir, tmp_path):
    import json

    from distill import train_student
    from tests.conftest import tiny

    overrides = tiny(synthetic_dir, "train.epochs=3", "train.progressive_min_size=16", "train.progressive_until=0.6")
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "run"), *overrides])
    metrics = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["resolution"] for m in metrics] == [16, 24, 32]
