"""The corruption benchmark and the shift suite of evaluate.py."""

import json

import numpy as np
import pytest
import torch

from distill.corruptions import CORRUPTIONS, PARAMS, SEVERITIES, _motion_blur, corrupt
from distill.data import load_shift_set
from tests.conftest import synthetic_split

IMAGES = torch.from_numpy(synthetic_split(64, 8).images)


def test_twelve_corruptions_of_five_severities_are_documented():
    from distill import corruptions

    assert len(CORRUPTIONS) >= 12 and set(CORRUPTIONS) == set(PARAMS)
    for name in CORRUPTIONS:
        assert len(PARAMS[name]) == len(SEVERITIES) and f"``{name}``" in corruptions.__doc__


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_seeded_and_grows_with_severity(name):
    out = [corrupt(IMAGES, name, s, seed=3) for s in SEVERITIES]
    assert all(o.shape == IMAGES.shape and o.dtype == torch.uint8 for o in out)
    assert torch.equal(out[2], corrupt(IMAGES, name, 3, seed=3))  # the same set every time
    distance = [(o.float() - IMAGES.float()).abs().mean().item() for o in out]
    assert distance[-1] > distance[0] > 0 or name == "pixelate"  # pixelate moves pixels at once, then little
    assert distance[-1] >= max(distance[:2])
    if name in ("gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog", "elastic"):
        assert not torch.equal(out[2], corrupt(IMAGES, name, 3, seed=4))  # the seed draws the noise


def test_corruptions_do_what_the_table_says():
    x = IMAGES.float()
    contrast = corrupt(IMAGES, "contrast", 5).float()  # factor 0.15 on the distance from the mean
    assert contrast.std((1, 2, 3)).mean() < 0.2 * x.std((1, 2, 3)).mean()
    bright = corrupt(IMAGES, "brightness", 3)
    hue = lambda im: torch.argsort(im.float(), -1)  # noqa: E731  (channel order: kept when hue is kept)
    unsaturated = (bright < 255).all(-1)
    assert (hue(bright) == hue(IMAGES))[unsaturated].float().mean() > 0.9
    k = _motion_blur(
        torch.zeros(2, 3, 32, 32), (10, 2), type("D", (), {"generator": lambda self, w: torch.Generator()})()
    )
    assert k.shape == (2, 3, 32, 32)
    for severity, quality in ((1, 80), (5, 40)):  # our JPEG loses about what PIL's encoder loses
        ours = corrupt(IMAGES, "jpeg", severity).numpy().astype(int)
        pil = np.stack([np.asarray(_pil_jpeg(im, quality)) for im in IMAGES.numpy()]).astype(int)
        lost_ours, lost_pil = np.abs(ours - IMAGES.numpy()).mean(), np.abs(pil - IMAGES.numpy()).mean()
        assert abs(lost_ours - lost_pil) < 0.15 * lost_pil and np.abs(ours - pil).mean() < 0.5 * lost_pil


def _pil_jpeg(image: np.ndarray, quality: int):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


def test_natural_shift_files_load(tmp_path):
    split = synthetic_split(6, 1)
    np.save(tmp_path / "cifar10.1_v6_data.npy", split.images)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", split.labels)
    np.savez(tmp_path / "cifar102_test.npz", images=split.images, labels=split.labels.astype(np.int32))
    for path in (tmp_path / "cifar10.1_v6_data.npy", tmp_path / "cifar102_test.npz"):
        loaded = load_shift_set(path)
        assert loaded.fingerprint() == split.fingerprint()


def test_evaluate_shift_suite_on_a_finished_run(synthetic_dir, tmp_path):
    from distill import evaluate, train_student
    from tests.conftest import tiny

    run = tmp_path / "ce"
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(run), *tiny(synthetic_dir)])
    split = synthetic_split(30, 9)
    np.save(tmp_path / "v6_data.npy", split.images)
    np.save(tmp_path / "v6_labels.npy", split.labels)
    result = evaluate.main(
        ["--run", str(run), "--suite", "shift", "--natural", str(tmp_path / "v6_data.npy"), "--images", "50"]
    )
    saved = json.loads((run / "shift" / "shift.json").read_text())
    assert saved == json.loads(json.dumps(result)) and (run / "shift" / "shift.png").stat().st_size > 10_000
    assert set(saved["corruptions"]) == set(CORRUPTIONS) and saved["images"] == 50
    assert all(set(v) == {"1", "2", "3", "4", "5"} for v in saved["corruptions"].values())
    mean = np.mean([a for v in saved["corruptions"].values() for a in v.values()])
    assert saved["mean_corruption_accuracy"] == pytest.approx(mean)
    assert saved["drop"] == pytest.approx(saved["clean"] - mean) and set(saved["natural"]) == {"v6_data.npy"}
    # --bn-stats test on a natural set too small for statistics: refused before any set is scored or written
    import shutil

    from distill.errors import UserError

    shutil.rmtree(run / "shift")
    with pytest.raises(
        UserError,
        match=r"needs at least 256 images per set; the test set has 200, v6_data\.npy has 30 \(raise --images, or "
        r"leave --natural v6_data\.npy out, or leave --bn-stats at train\)",  # each set's own fix
    ):
        evaluate.main(["--run", str(run), "--suite", "shift", "--natural", str(tmp_path / "v6_data.npy"),
                       "--bn-stats", "test"])  # fmt: skip
    assert not (run / "shift" / "shift.json").exists()
