import numpy as np
import pytest
import torch

from distill.augment import AugmentSpec, TTASpec, apply_views, normalize, sample_views, shift
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


@pytest.mark.parametrize("spec", [AugmentSpec(4, True, 0), AugmentSpec(2, True, 8), AugmentSpec(0, False, 0)])
def test_apply_views_matches_per_image_reference(spec):
    split = synthetic_split(16, 0)
    views = sample_views(16, spec, torch.Generator().manual_seed(1))
    out = apply_views(torch.from_numpy(split.images), views, spec).numpy()
    for i in range(16):
        v = {k: int(views[k][i]) for k in views}
        np.testing.assert_array_equal(
            out[i], reference(split.images[i], v["dy"], v["dx"], bool(v["flip"]), v["cy"], v["cx"], spec)
        )


def test_views_are_deterministic_and_in_range():
    spec = AugmentSpec(4, True, 8)
    a = sample_views(1000, spec, torch.Generator().manual_seed(3))
    b = sample_views(1000, spec, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["dx"].min() == -4 and a["dx"].max() == 4
    assert 0.4 < a["flip"].float().mean() < 0.6
    assert not sample_views(100, AugmentSpec(4, False, 0), torch.Generator())["flip"].any()


def test_output_is_channels_last_float():
    x = apply_views(
        torch.zeros(2, 32, 32, 3, dtype=torch.uint8), sample_views(2, AugmentSpec(), torch.Generator()), AugmentSpec()
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
    spec = AugmentSpec(4, True, 0, alternate_flip=True)
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
