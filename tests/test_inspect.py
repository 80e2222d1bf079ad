"""distill-inspect: the scored set against CIFAR-10, on synthetic pickles with known shifts."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from distill import inspection, train_student
from distill.data import load_cifar10
from distill.errors import UserError
from tests.conftest import tiny


def write_pickle(path, images):
    path.write_bytes(pickle.dumps({"data": images, "ids": np.arange(len(images))}, protocol=pickle.HIGHEST_PROTOCOL))
    return path


@pytest.fixture(scope="module")
def test_images(synthetic_dir):
    return load_cifar10(synthetic_dir, download=False)[1].images


def box_blur(images: np.ndarray) -> np.ndarray:
    x = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    out = sum(x[:, i : i + 32, j : j + 32] for i in range(3) for j in range(3)) / 9
    return out.round().astype(np.uint8)


def test_a_copy_of_the_test_set_is_all_duplicates(test_images, synthetic_dir, tmp_path):
    result = inspection.inspect_set(write_pickle(tmp_path / "copy.pkl", test_images), tmp_path / "out",
                                    data_dir=str(synthetic_dir))  # fmt: skip
    assert result["duplicates"]["exact"]["test"] == len(test_images) == result["duplicates"]["exact_total"]
    assert all(abs(d["effect_size"]) < 1e-6 for d in result["stats"].values())
    assert "look like CIFAR-10's test images" in result["reading"] and "overlaps CIFAR-10" in result["reading"]
    for name in ("report.md", "inspect.json", "stats.png", "stats.pdf", "samples.png", "duplicates.png"):
        assert (tmp_path / "out" / name).is_file()
    assert json.loads((tmp_path / "out" / "inspect.json").read_text())["images"] == len(test_images)


def test_a_darkened_copy_reads_darker_and_still_near(test_images, synthetic_dir, tmp_path):
    dark = (test_images * 0.6).astype(np.uint8)
    result = inspection.inspect_set(write_pickle(tmp_path / "dark.pkl", dark), tmp_path / "out",
                                    data_dir=str(synthetic_dir))  # fmt: skip
    assert result["stats"]["brightness"]["effect_size"] < -0.5 and "darker" in result["reading"]
    assert result["duplicates"]["exact_total"] == 0 and result["duplicates"]["near_total"] > 0.9 * len(dark)


def test_a_blurred_copy_reads_less_sharp(test_images, synthetic_dir, tmp_path):
    result = inspection.inspect_set(write_pickle(tmp_path / "blur.pkl", box_blur(test_images)), tmp_path / "out",
                                    data_dir=str(synthetic_dir))  # fmt: skip
    assert result["stats"]["sharpness"]["effect_size"] < -0.2 and "blurrier" in result["reading"]
    assert "darker" not in result["reading"]


def test_the_statistics_by_hand():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, :, 16:] = (255, 0, 0)  # half black, half pure red
    s = inspection.image_stats(img)
    luma = 0.299  # the red half's luminance
    assert s["brightness"][0] == pytest.approx(luma / 2, rel=1e-5)
    assert s["contrast"][0] == pytest.approx(luma / 2, rel=1e-5)  # two equal halves: std = half the gap
    assert s["saturation"][0] == pytest.approx(0.5, rel=1e-5)  # red pixels 1, black ones 0
    assert s["warmth"][0] == pytest.approx(0.5, rel=1e-5)
    # the Laplacian is nonzero only along the edge: 2 columns of 30 interior pixels, (0.299)^2 each, over 30 x 30
    assert s["sharpness"][0] == pytest.approx(2 * 30 * luma**2 / 900, rel=1e-4)


def test_with_a_run_it_reads_the_models_predictions_and_batchnorm(test_images, synthetic_dir, tmp_path):
    run = tmp_path / "ce"
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(run), *tiny(synthetic_dir)])
    result = inspection.inspect_set(write_pickle(tmp_path / "dark.pkl", (test_images * 0.5).astype(np.uint8)),
                                    tmp_path / "out", run=run, data_dir=str(synthetic_dir))  # fmt: skip
    model = result["model"]
    assert sum(model["predicted_classes"].values()) == len(test_images) and 0 < model["mean_confidence"] <= 1
    rows = model["batchnorm"]
    assert rows and all(math.isfinite(r["shift"]) and math.isfinite(r["reference"]) for r in rows)
    assert max(r["excess"] for r in rows) > 0  # darker inputs sit further from the stored statistics
    assert "BatchNorm input statistics differ most in" in result["reading"]
    assert (tmp_path / "out" / "model.png").is_file()


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_a_pickle", "is truncated or not a pickle"),
        ("no_data", "no 'data' key"),
        ("directory", "is a directory; give the test pickle file itself"),
        ("missing", "test pickle not found"),
        ("out_is_file", "--out .* is a file"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(case, message, synthetic_dir, tmp_path):
    pkl, out = tmp_path / "x.pkl", tmp_path / "out"
    if case == "not_a_pickle":
        pkl.write_bytes(b"hello")
    elif case == "no_data":
        pkl.write_bytes(pickle.dumps({"images": np.zeros((2, 32, 32, 3), np.uint8)}))
    elif case == "directory":
        pkl.mkdir()
    elif case == "out_is_file":
        write_pickle(pkl, np.zeros((2, 32, 32, 3), np.uint8))
        out.write_text("a file")
    with pytest.raises(UserError, match=message) as err:
        inspection.main([str(pkl), "--out", str(out), "--data-dir", str(synthetic_dir)])
    assert "\n" not in str(err.value)
    assert case == "out_is_file" or not out.exists()
    assert not list(tmp_path.glob(".out.*"))


def test_too_few_images_are_never_called_a_shift():
    """One dark image read as 'these images are darker than CIFAR-10's'; below MIN_IMAGES no shift is named."""
    from distill.inspection import MIN_IMAGES, describe

    stats = {k: {"effect_size": -1.5, "spread_ratio": 0.0} for k in ("brightness", "contrast")}
    dup = {"exact_total": 0, "near_total": 0, "cifar10_test_near_train": 0.01, "exact": {"test": 0, "train": 0}}
    bn = [{"layer": "stem.2", "shift": 3.0, "reference": 0.5, "excess": 2.5}]
    for n in (1, 5, MIN_IMAGES - 1):
        text = describe(stats, dup | {"images": n}, bn, (0.5, 0.9))
        assert "too few to tell a shift from chance" in text and "darker" not in text and "BatchNorm" not in text
    text = describe(stats, dup | {"images": MIN_IMAGES}, bn, (0.5, 0.9))
    assert "darker" in text and "BatchNorm input statistics differ most" in text and "less sure" in text


def test_an_empty_natural_set_is_refused_on_loading(tmp_path):
    from distill.data import load_shift_set

    np.save(tmp_path / "empty_data.npy", np.zeros((0, 32, 32, 3), np.uint8))
    np.save(tmp_path / "empty_labels.npy", np.zeros(0, np.int64))
    with pytest.raises(UserError, match="holds no images"):
        load_shift_set(tmp_path / "empty_data.npy")
