import os
import pickle

import numpy as np
import pytest

from distill.data import BATCH_DIR, Split, load_cifar10, load_test_pickle, safe_unpickle, write_batches
from distill.errors import UserError
from tests.conftest import synthetic_split


class Exploit:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    sentinel = tmp_path / "pwned"
    bad = tmp_path / "test.pkl"
    bad.write_bytes(pickle.dumps({b"data": Exploit(sentinel)}))
    with pytest.raises(UserError, match="not a plain data pickle"):
        load_test_pickle(bad)
    assert not sentinel.exists()


def test_restricted_unpickler_loads_arrays(tmp_path):
    path = tmp_path / "ok.pkl"
    payload = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "ids": [1, 2], "t": (1.5, "x")}
    path.write_bytes(pickle.dumps(payload))
    out = safe_unpickle(path)
    np.testing.assert_array_equal(out[b"data"], payload[b"data"])
    assert out["ids"] == [1, 2]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_of_any_protocol_read_as_the_plain_data_they_are(protocol, tmp_path):
    """Protocol 5, today's pickle.HIGHEST_PROTOCOL, stores an array through numpy's _frombuffer: allowed, as
    the older protocols' _reconstruct is; scalars, dtypes, Fortran order and byte order come back as they were."""
    payload = {
        "data": np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3),
        "ids": np.arange(2),
        "scalar": np.int64(3),
        "dtype": np.dtype("uint8"),
        "fortran": np.asfortranarray(np.ones((3, 4))),
        "big_endian": np.array([1.5, 2.0], dtype=">f8"),
    }
    path = tmp_path / f"p{protocol}.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    out, plain = safe_unpickle(path), pickle.loads(path.read_bytes())  # what an unrestricted load gives
    for key, value in payload.items():
        np.testing.assert_array_equal(out[key], value)
        assert np.asarray(out[key]).dtype == np.asarray(plain[key]).dtype
    assert load_test_pickle(path)[0].shape == (2, 32, 32, 3)
    exploit = tmp_path / "bad.pkl"
    exploit.write_bytes(pickle.dumps({"data": Exploit(tmp_path / "pwned")}, protocol=protocol))
    with pytest.raises(UserError, match="not a plain data pickle"):
        load_test_pickle(exploit)
    assert not (tmp_path / "pwned").exists()


def test_round_trip_official_layout(tmp_path):
    train, test = synthetic_split(50, 0), synthetic_split(20, 1)
    write_batches(tmp_path, train, test)
    got_train, got_test = load_cifar10(tmp_path, download=False)
    np.testing.assert_array_equal(got_train.images, train.images)
    np.testing.assert_array_equal(got_test.labels, test.labels)
    assert got_train.fingerprint() == train.fingerprint()
    assert got_train.head(10).fingerprint() != train.fingerprint()


def test_missing_data_offline_says_where(tmp_path):
    with pytest.raises(UserError, match=f"{BATCH_DIR}.*data_batch_1.*put the official python batches"):
        load_cifar10(tmp_path, download=False)


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match="download failed"):
        load_cifar10(tmp_path, download=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "truncated or not a pickle"),
        (lambda b: b"", "truncated or not a pickle"),
        (lambda b: pickle.dumps(["not", "a", "batch"]), "not a CIFAR-10 batch"),
        (lambda b: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}), "labels outside 0..9"),
        (
            lambda b: pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
            "must be uint8 \\(N, 3072\\)",
        ),
    ],
)
def test_damaged_batch_files(tmp_path, damage, message):
    write_batches(tmp_path, synthetic_split(50, 0), synthetic_split(20, 1))
    path = tmp_path / BATCH_DIR / "data_batch_3"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message):
        load_cifar10(tmp_path, download=False)


def _write(tmp_path, obj):
    path = tmp_path / "test.pkl"
    path.write_bytes(pickle.dumps(obj))
    return path


def smooth_images(n: int, seed: int) -> np.ndarray:
    """Images as smooth as photographs: a random colour gradient each, and a little noise."""
    rng = np.random.default_rng(seed)
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    slope = rng.uniform(-3, 3, (n, 1, 1, 3, 2))
    base = rng.uniform(60, 190, (n, 1, 1, 3))
    x = base + slope[..., 0] * (r - 16)[None, :, :, None] + slope[..., 1] * (c - 16)[None, :, :, None]
    return np.clip(x + rng.normal(0, 2, x.shape), 0, 255).astype(np.uint8)


def test_test_pickle_formats(tmp_path, capsys):
    images = smooth_images(5, 3)
    read, ids = load_test_pickle(_write(tmp_path, {b"data": images, b"ids": np.array([9, 8, 7, 6, 5])}))
    np.testing.assert_array_equal(read, images)
    assert ids.tolist() == [9, 8, 7, 6, 5]
    read, ids = load_test_pickle(_write(tmp_path, {b"data": images.transpose(0, 3, 1, 2).reshape(5, -1)}))  # planar
    np.testing.assert_array_equal(read, images)
    assert ids.tolist() == [0, 1, 2, 3, 4] and "interleaved" not in capsys.readouterr().err
    read, _ = load_test_pickle(_write(tmp_path, {b"data": images.reshape(5, -1)}))  # HWC-flattened rows
    np.testing.assert_array_equal(read, images)
    assert "pixel-interleaved (each image HWC-flattened)" in capsys.readouterr().err  # decided, and said
    read, _ = load_test_pickle(_write(tmp_path, {b"data": images.transpose(0, 3, 1, 2)}))  # NCHW
    np.testing.assert_array_equal(read, images)


def test_rows_whose_layout_the_images_cannot_tell_are_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)  # no layout is smoother
    with pytest.raises(
        UserError, match="cannot tell from the images whether its \\(N, 3072\\) rows are channel-planar"
    ):
        load_test_pickle(_write(tmp_path, {b"data": noise}))
    flat = np.full((2, 3072), 7, np.uint8)  # both readings are the same images: nothing to decide
    assert load_test_pickle(_write(tmp_path, {b"data": flat}))[0].shape == (2, 32, 32, 3)


def test_real_cifar_rows_are_read_in_either_layout(real_data_dir, tmp_path):
    images = load_cifar10(real_data_dir, download=False)[1].images[:50]
    for rows in (images.transpose(0, 3, 1, 2).reshape(50, -1), images.reshape(50, -1)):
        np.testing.assert_array_equal(load_test_pickle(_write(tmp_path, {b"data": rows}))[0], images)


@pytest.mark.parametrize(
    "obj, message",
    [
        ({b"data": np.zeros((3, 32, 32, 3), np.float32)}, "must be uint8"),
        ({b"data": np.zeros((3, 32, 32), np.uint8)}, "must be \\(N, 32, 32, 3\\)"),
        ({b"pixels": np.zeros((3, 32, 32, 3), np.uint8)}, "no 'data' key"),
        ({b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": [1, 1, 2]}, "duplicates"),
        ({b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": [1, 2]}, "'ids' must be 3 integers"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_bad_test_pickles(tmp_path, obj, message):
    with pytest.raises(UserError, match=message):
        load_test_pickle(_write(tmp_path, obj))


def test_split_head():
    split = Split(np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 10)
    assert len(split.head(3)) == 3 and len(split.head(None)) == 10


def test_hold_out_is_stratified_seeded_and_disjoint():
    from distill.data import hold_out
    from tests.conftest import synthetic_split

    train = synthetic_split(1000, 3)
    rest, val = hold_out(train, 100, seed=5)
    assert len(rest) == 900 and len(val) == 100
    counts, share = np.bincount(val.labels, minlength=10), np.bincount(train.labels, minlength=10) / 10
    assert np.abs(counts - share).max() < 1  # each class gives its share, rounded
    again, other = hold_out(train, 100, seed=5)[1], hold_out(train, 100, seed=6)[1]
    assert again.fingerprint() == val.fingerprint() and other.fingerprint() != val.fingerprint()
    rows = {r.tobytes() for r in train.images.reshape(1000, -1)}
    assert rows == {r.tobytes() for r in np.concatenate([rest.images, val.images]).reshape(1000, -1)}


@pytest.mark.parametrize(
    "pixels, advice",
    [
        (np.full((2, 32, 32, 3), 0.5, np.float32), r"values lie in 0\.\.1: scale them, \(x \* 255\)\.round\(\)"),
        (np.full((2, 32, 32, 3), 200.0), r"values lie in 0\.\.255: np\.round\(x\)\.astype\(np\.uint8\)"),
        (np.full((2, 32, 32, 3), -1.5, np.float32), r"span -1\.5\.\.-1\.5, not pixels 0\.\.255: map them"),
        (np.full((2, 32, 32, 3), 7, np.int64), r"values lie in 0\.\.255"),
    ],
)
def test_float_pixels_are_never_advised_a_plain_cast(pixels, advice, tmp_path):
    """.astype(np.uint8) on floats in 0..1 makes every pixel 0: the advice follows what the array holds."""
    from distill.data import load_unlabeled

    with pytest.raises(UserError, match=advice):
        load_test_pickle(_write(tmp_path, {b"data": pixels}))
    np.save(tmp_path / "u.npy", pixels)
    with pytest.raises(UserError, match=advice):
        load_unlabeled([str(tmp_path / "u.npy")])
