"""CIFAR-10 in memory: the official python batches as uint8 arrays, and the Kaggle test pickle.

Images are kept as ``(N, 32, 32, 3)`` uint8 (NHWC) and labels as ``(N,)`` int64. Every pickle is read
through :class:`SafeUnpickler`, which admits only numpy arrays and plain containers, so a file that
would run code on load is refused instead.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.errors import UserError, warn
from distill.files import check_kind, file_stamp

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"

# The official files' md5, as published with the data set (and checked by torchvision's CIFAR10)
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
# sha256 of each official batch's content (its (10000, 3072) uint8 rows, then its labels as int64), which a
# re-pickled copy keeps while its md5 changes (the copy in ../shared/data/cifar10 lacks the `filenames` key);
# computed here from that copy, which is pixel for pixel the official set.
OFFICIAL_CONTENT = {
    "data_batch_1": "54b2ed21fbd6a52cfc507fb5af63b8610e1938828f3017b159e69e87bb1965db",
    "data_batch_2": "a860ea80505c3e017d336ca80eca64bdc58099bf285ae8650980ed6c846f5e53",
    "data_batch_3": "701e5e97f12252a2ec703b29fe275315471b883e27926ec8e9d3b08ca81b2fab",
    "data_batch_4": "6c9358a56fb97959b9b494683c1c1ef9f0c4f291f3686302835e08a0b0ab2f47",
    "data_batch_5": "c2108fec4d9d07a51c26c680b5886f54ff810c859a3f7ba7efe3a4a82a838293",
    "test_batch": "2c33b053d1cd726af8d86e174a96dd89d7000ba1412add026d68142375b89d51",
}

# Per-channel mean and std of the CIFAR-10 training set, in 0..255 units.
MEAN = (125.307, 122.961, 113.8575)
STD = (62.9932, 62.0887, 66.7048)


@dataclass
class DataConfig:
    """The recipe's ``data`` section: where the batches are, and which images a run uses."""

    dir: str = "data"  # holds, or receives, cifar-10-batches-py/
    download: bool = True  # fetch the official archive (md5-checked) when the batches are missing
    train_limit: int | None = None  # use only the first N training images (smoke runs, tests)
    test_limit: int | None = None  # use only the first N test images
    val_size: int = 0  # hold out N training images, stratified by class, for per-epoch evaluation (0 = off)
    val_seed: int = 0  # which images are held out
    # A final fit: the test images (after test_limit) join the labelled training set, and the run is measured
    # on the val_size images held out of the combined set instead (the competition scores a hidden set).
    train_on_test: bool = False


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need; anything else is refused.

    Plain containers (dict, list, tuple, bytes, str, numbers) need no globals at all, so a pickle
    of arrays in dicts loads, while one whose ``__reduce__`` names ``os.system`` fails before any
    call is made.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles of bytes (numpy buffers) go through it; it only encodes text
        ("numpy._core.numeric", "_frombuffer"),  # protocol 5 (Python >= 3.8's pickle.HIGHEST_PROTOCOL): an array is
        ("numpy.core.numeric", "_frombuffer"),  # frombuffer(bytes, dtype).reshape(shape), which refuses object dtypes
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}': only numpy arrays are allowed")


def safe_unpickle(path: Path, what: str = "pickle file", fix: str = "pass the right file") -> object:
    """Unpickle ``path`` with :class:`SafeUnpickler`; any failure is a UserError naming the file (and, for a file
    of another kind, what it is: :func:`~distill.files.check_kind`)."""
    check_kind(path, ("pickle",), what, fix)
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except pickle.UnpicklingError as err:
        if "refusing" in str(err):
            raise UserError(f"{path} is not a plain data pickle ({err}); it was not loaded") from None
        raise UserError(f"{path} is truncated or not a pickle ({err}); re-download or re-create it") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError, OSError) as err:
        raise UserError(f"{path} is truncated or not a pickle ({type(err).__name__}: {err}); re-create it") from None


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    return None


@dataclass
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """sha256 over the images and labels; ties a logit cache to the exact training data. Computed once per
        split (a split's arrays are never changed in place)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.images).tobytes())
            h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.images, self.labels

    def join(self, other: "Split") -> "Split":
        """This split's images, then ``other``'s."""
        return Split(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]))

    def head(self, limit: int | None) -> "Split":
        if limit is None or limit >= len(self):
            return self
        return Split(self.images[:limit], self.labels[:limit])


def hold_out(train: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Split ``size`` images off ``train``, stratified by class: ``(rest, held out)``, both in the original order.

    Each class gives ``size`` x its share of the images (largest remainders first, ties to the lower
    class), chosen by a generator seeded with ``seed`` alone; the same images on every machine.
    """
    if size >= len(train):
        raise UserError(
            f"data.val_size={size} leaves no training images (there are {len(train)}); choose a smaller one"
        )
    counts = np.bincount(train.labels, minlength=10)
    quota = counts * size / len(train)
    take = np.floor(quota).astype(int)
    for c in np.argsort(-(quota - take), kind="stable")[: size - take.sum()]:
        take[c] += 1
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:k] for c, k in enumerate(take)])
    held = np.zeros(len(train), dtype=bool)
    held[chosen] = True
    return Split(train.images[~held], train.labels[~held]), Split(train.images[held], train.labels[held])


def load_data(cfg: DataConfig) -> tuple[Split, Split | None, Split]:
    """``(train, val, test)`` as the recipe's ``data`` section asks: limits first, then (``train_on_test``)
    the test images appended to the training images, then the held-out split (None when ``val_size`` is 0).
    With ``train_on_test`` the returned test split has been trained on: it is no measurement."""
    train, test = load_cifar10(cfg.dir, cfg.download)
    train, test = train.head(cfg.train_limit), test.head(cfg.test_limit)
    if cfg.train_on_test:
        train = train.join(test)
    if not cfg.val_size:
        return train, None, test
    train, val = hold_out(train, cfg.val_size, cfg.val_seed)
    return train, val, test


def rows_to_nhwc(rows: np.ndarray, source: str) -> np.ndarray:
    """(N, 3072) channel-planar uint8 rows, as in the official batches, -> (N, 32, 32, 3)."""
    if rows.ndim != 2 or rows.shape[1] != 3072:
        raise UserError(f"{source}: expected (N, 3072) rows, got shape {rows.shape}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _roughness(images: np.ndarray) -> float:
    """Mean absolute difference of vertically and horizontally adjacent pixels of NHWC images."""
    x = images.astype(np.float32)
    return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())


def rows_from_data(rows: np.ndarray, source: str) -> np.ndarray:
    """(N, 3072) rows of a test pickle -> (N, 32, 32, 3), their layout decided from the images, never guessed.

    CIFAR-10's batches store each image channel-planar (1024 red, then green, then blue values); a row that
    flattens an HWC image interleaves them. Natural images are smooth in the right layout and rough in the other
    (on CIFAR-10's test images the wrong one is over twice as rough, for a single image as for 500); a layout
    clearly smoother than the other (ratio under :data:`LAYOUT_MARGIN`) is taken, interleaved with a note, and
    rows whose layout the images cannot tell are refused."""
    planar = rows_to_nhwc(rows, source)
    interleaved = np.ascontiguousarray(rows.reshape(-1, 32, 32, 3))
    sample = slice(0, 500)
    if np.array_equal(planar[sample], interleaved[sample]):  # e.g. flat images: both readings agree
        return planar
    rough_planar, rough_interleaved = _roughness(planar[sample]), _roughness(interleaved[sample])
    if rough_planar < LAYOUT_MARGIN * rough_interleaved:
        return planar
    if rough_interleaved < LAYOUT_MARGIN * rough_planar:
        warn(f"{source}: its (N, 3072) rows are pixel-interleaved (each image HWC-flattened), not channel-planar "
              f"as CIFAR-10's batches; read as such (they are {rough_planar / rough_interleaved:.1f}x smoother so)")  # fmt: skip
        return interleaved
    raise UserError(
        f"{source}: cannot tell from the images whether its (N, 3072) rows are channel-planar (CIFAR-10's layout) or "
        f"pixel-interleaved (HWC); save 'data' as (N, 32, 32, 3) uint8 images instead"
    )


LAYOUT_MARGIN = 0.8  # a layout this much smoother than the other is the images' (CIFAR-10: under 0.5)


def _read_batch(path: Path) -> Split:
    batch = safe_unpickle(path, "CIFAR-10 batch file", "re-download it (data.download=true) or replace the file")
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR-10 batch (a dict with data and labels); replace the file")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise UserError(f"{path} is not a CIFAR-10 batch (missing data or labels); replace the file")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}; replace the file")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise UserError(f"{path}: {data.shape[0]} images but {labels.size} labels; replace the file")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 0..9 (min {labels.min()}, max {labels.max()}); replace the file")
    return Split(rows_to_nhwc(data, str(path)), labels)


def _download(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5, remove_finished=True)
    except (OSError, RuntimeError, tarfile.TarError) as err:
        raise UserError(
            f"CIFAR-10 is not in {root / BATCH_DIR} and the download failed ({type(err).__name__}); "
            f"put the official python batches there (data_batch_1..5, test_batch), e.g. from {URL}"
        ) from None


def load_cifar10(root: str | Path, download: bool = True) -> tuple[Split, Split]:
    """Load (train, test) from ``root/cifar-10-batches-py``, downloading the archive when allowed."""
    root = Path(root)
    folder = root / BATCH_DIR
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]
    if missing:
        if not download:
            raise UserError(
                f"CIFAR-10 batches missing in {folder} ({', '.join(missing)}); put the official python "
                f"batches there or set data.download=true to fetch {URL}"
            )
        root.mkdir(parents=True, exist_ok=True)
        _download(root)
    stamp = tuple(file_stamp(folder / name) for name in (*TRAIN_FILES, TEST_FILE))
    if stamp not in _LOADED:  # each batch file is read once per command, however many stages ask for the data
        parts = {name: _read_batch(folder / name) for name in (*TRAIN_FILES, TEST_FILE)}
        check_batches(folder, parts)
        test = parts.pop(TEST_FILE)
        train = Split(
            np.concatenate([p.images for p in parts.values()]), np.concatenate([p.labels for p in parts.values()])
        )
        _LOADED.clear()  # one data set at a time: another folder's replaces it
        _LOADED[stamp] = (train, test)
    return _LOADED[stamp]


_LOADED: dict[tuple, tuple[Split, Split]] = {}  # the batch files' stamps -> (train, test), read once per command


_CHECKED: set[tuple] = set()  # the batch folders already checked by this process (path, sizes, mtimes)


def content_sha256(split: Split) -> str:
    """sha256 of a batch as the official file holds it: (N, 3072) channel-planar rows, then int64 labels."""
    rows = np.ascontiguousarray(split.images.transpose(0, 3, 1, 2)).reshape(len(split), -1)
    return hashlib.sha256(rows.tobytes() + np.ascontiguousarray(split.labels, dtype=np.int64).tobytes()).hexdigest()


def check_batches(folder: Path, parts: dict[str, Split]) -> None:
    """Warn (once per process), naming the file, when a batch is not CIFAR-10's own (neither the published
    md5 nor the official content) or when two batches hold the same images: a copy gone wrong trains on the
    test set, or on another data set, without a word otherwise."""
    stamp = tuple((name, (folder / name).stat().st_size, (folder / name).stat().st_mtime_ns) for name in parts)
    if (folder.resolve(), stamp) in _CHECKED:
        return
    _CHECKED.add((folder.resolve(), stamp))
    content = {name: content_sha256(split) for name, split in parts.items()}
    for name in parts:
        md5 = hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest()
        if md5 != OFFICIAL_MD5[name] and content[name] != OFFICIAL_CONTENT[name]:
            warn(
                f"{folder / name} is not CIFAR-10's official {name} (neither its published md5 nor its images and "
                f"labels); if that is not deliberate, replace it with the official file"
            )
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if content[a] == content[b]:
                warn(f"{folder / a} and {folder / b} hold the same images and labels (a copy gone wrong?)")
    shared = shared_images(parts[TEST_FILE].images, np.concatenate([parts[n].images for n in TRAIN_FILES]))
    if shared > len(parts[TEST_FILE]) // 100:  # the official sets share no image
        warn(f"{shared:,} images of {folder / TEST_FILE} are also training images: the test set would be trained on")


def pixel_fix(data: np.ndarray) -> str:
    """How to turn non-uint8 pixels into uint8 0..255, by what they hold: floats in 0..1 are scaled (a plain
    ``.astype(np.uint8)`` would make them all 0 or 1), values in 0..255 rounded, anything else rescaled first."""
    if data.size == 0 or not np.issubdtype(data.dtype, np.number):
        return "save uint8 pixels 0..255"
    low, high = float(np.nanmin(data)), float(np.nanmax(data))
    if np.issubdtype(data.dtype, np.floating) and 0.0 <= low and high <= 1.0:
        return "its values lie in 0..1: scale them, (x * 255).round().astype(np.uint8)"
    if 0.0 <= low and high <= 255.0:
        return "its values lie in 0..255: np.round(x).astype(np.uint8)"
    return f"its values span {low:g}..{high:g}, not pixels 0..255: map them to 0..255 first, then .astype(np.uint8)"


def load_test_pickle(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the Kaggle test pickle: returns ``(images (N, 32, 32, 3) uint8, ids (N,) int64)``.

    Accepts ``data`` as (N, 32, 32, 3) HWC images or (N, 3072) channel-planar rows; ``ids`` may be
    missing, in which case ids are 0..N-1.
    """
    path = Path(path)
    obj = safe_unpickle(path, "test pickle file", "pass the competition's test pickle (e.g. cifar_test_nolabel.pkl)")
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict with a 'data' array, got {type(obj).__name__}")
    label = _key(obj, "batch_label")
    label = label.decode(errors="replace") if isinstance(label, bytes) else str(label or "")
    if _key(obj, "labels") is not None and (label.startswith("training batch") or path.name in TRAIN_FILES):
        raise UserError(
            f"{path} is a CIFAR-10 training batch ({label or path.name}: labelled training images), not the test "
            f"pickle; pass the competition's test pickle (e.g. cifar_test_nolabel.pkl)"
        )
    data = _key(obj, "data")
    if data is None:
        raise UserError(f"{path}: no 'data' key (keys: {sorted(map(str, obj))}); pass the competition's test pickle")
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise UserError(f"{path}: 'data' must be uint8 pixels 0..255, got {data.dtype}; {pixel_fix(data)}")
    if data.ndim == 2:
        data = rows_from_data(data, str(path))
    if data.ndim == 4 and data.shape[1:] == (3, 32, 32):  # NCHW: unambiguous, the channels are the 3-long axis
        data = data.transpose(0, 2, 3, 1)
    if data.ndim != 4 or data.shape[1:] != (32, 32, 3):
        raise UserError(
            f"{path}: 'data' must be (N, 32, 32, 3), (N, 3, 32, 32) or (N, 3072) images, got shape {data.shape}"
        )
    if len(data) == 0:
        raise UserError(f"{path}: 'data' holds no images; pass the competition's test pickle")
    ids = _key(obj, "ids")
    ids = np.arange(len(data), dtype=np.int64) if ids is None else np.asarray(ids)
    if ids.shape != (len(data),) or not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"{path}: 'ids' must be {len(data)} integers, got {ids.dtype} {ids.shape}")
    if ids.size and ids.max() > np.iinfo(np.int64).max:  # a uint64 id would wrap to a negative one
        raise UserError(f"{path}: 'ids' go up to {ids.max()}, beyond 2^63-1 (int64); renumber them")
    if len(np.unique(ids)) != len(ids):
        raise UserError(f"{path}: 'ids' has duplicates; each test image needs its own id")
    return np.ascontiguousarray(data), ids.astype(np.int64)


UNLABELED = -1  # the label of a transfer-set image: it has none


_UNLABELED: dict[tuple, tuple[Split, int]] = {}  # the files' stamps -> (deduplicated set, duplicates dropped)


def load_unlabeled(paths: list[str] | tuple[str, ...], say: bool = False) -> Split:
    """The transfer set of ``paths`` (see :func:`_read_unlabeled`), read and fingerprinted once per command; with
    ``say``, a warning counts the duplicates dropped."""
    for name in paths:
        check_kind(name, ("pickle", "a numpy .npy array"), "unlabelled image file", "check kd.unlabeled (--unlabeled)")
    stamp = tuple(file_stamp(p) for p in paths)
    if stamp not in _UNLABELED:
        _UNLABELED[stamp] = _read_unlabeled(paths)
    split, dropped = _UNLABELED[stamp]
    if dropped and say:
        warn(
            f"{dropped:,} of the {len(split) + dropped:,} unlabelled images ({', '.join(map(str, paths))}) are exact "
            f"duplicates of others (within a file, or a file given twice): dropped, {len(split):,} kept"
        )
    return split


def _read_unlabeled(paths: list[str] | tuple[str, ...]) -> tuple[Split, int]:
    """The images of a transfer set, in order, with label :data:`UNLABELED` (-1): each file a test pickle
    (as :func:`load_test_pickle` reads it) or a plain ``.npy`` of (N, 32, 32, 3) uint8 images.

    Exact duplicates (within a file, or a file given twice) are dropped, the first of each kept, so that no image
    weighs twice in the KD term; with ``say``, a warning counts them."""
    parts = []
    for name in paths:
        path = Path(name)  # load_unlabeled checked that each exists and is a pickle or an .npy
        if path.suffix == ".npy":
            check_kind(
                path, ("a numpy .npy array",), "unlabelled image file", "save the images with np.save(path, images)"
            )
            try:
                images = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise UserError(
                    f"{path} is not a plain .npy array ({str(err).splitlines()[0]}); save it with np.save(path, images)"
                ) from None
            if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
                raise UserError(
                    f"{path}: unlabelled images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}; "
                    f"save them in NHWC order"
                )
            if images.dtype != np.uint8:
                raise UserError(f"{path}: unlabelled images must be uint8 pixels 0..255, got {images.dtype}; "
                                f"{pixel_fix(images)}")  # fmt: skip
            if len(images) == 0:
                raise UserError(f"{path} holds no images; remove it from kd.unlabeled")
        else:
            images, _ = load_test_pickle(path)
        parts.append(np.ascontiguousarray(images))
    if not parts:
        return Split(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)), 0
    images = np.concatenate(parts)
    first = np.sort(np.unique(image_keys(images), return_index=True)[1])
    dropped = len(images) - len(first)
    images = images[first] if dropped else images
    split = Split(images, np.full(len(images), UNLABELED, dtype=np.int64))
    split.fingerprint()  # computed once, with the set
    return split, dropped


def image_keys(images: np.ndarray) -> np.ndarray:
    """A 64-bit key per uint8 (N, 32, 32, 3) image (a fixed random linear hash of its bytes, modulo 2^64):
    equal images have equal keys, and two different images share one by chance about once in 2^64."""
    words = np.ascontiguousarray(images).reshape(len(images), -1).view(np.uint64)  # (N, 384)
    weights = np.random.default_rng(20261201).integers(1, 2**63, words.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * weights).sum(axis=1, dtype=np.uint64)


def shared_images(a: np.ndarray, b: np.ndarray) -> int:
    """How many images of ``a`` are also in ``b`` (pixel for pixel)."""
    if not len(a) or not len(b):
        return 0
    return int(np.isin(image_keys(a), image_keys(b)).sum())


def load_transfer_set(files: list[str], train: Split, say: bool) -> Split | None:
    """The transfer set's images (None without one); a warning (when ``say``) if some are training images."""
    if not files:
        return None
    unlabeled = load_unlabeled(files, say=say)
    shared = shared_images(unlabeled.images, train.images)
    if shared and say:
        print(
            f"warning: {shared:,} of the {len(unlabeled):,} unlabelled images ({', '.join(files)}) are training images; "
            f"they add nothing to the transfer set (a copy of the training data passed as kd.unlabeled?)",
            file=sys.stderr,
            flush=True,
        )
    return unlabeled


def load_shift_set(path: str | Path) -> Split:
    """A natural-shift test set: CIFAR-10.1 (``*_data.npy`` with ``*_labels.npy`` beside it) or CIFAR-10.2
    (an ``.npz`` holding ``images`` and ``labels``); arrays only (``allow_pickle=False``), checked."""
    path = Path(path)
    kind = ("a numpy .npz archive",) if path.suffix == ".npz" else ("a numpy .npy array",)
    check_kind(path, kind, "natural-shift set", "CIFAR-10.1 ships *_data.npy, CIFAR-10.2 an .npz")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "images" not in z or "labels" not in z:
                    raise UserError(
                        f"{path}: a CIFAR-10.2 .npz holds 'images' and 'labels', this one {sorted(z.files)}"
                    )
                images, labels = z["images"], z["labels"]
        elif path.name.endswith("_data.npy"):
            label_file = path.with_name(path.name.removesuffix("_data.npy") + "_labels.npy")
            if not label_file.is_file():
                raise UserError(f"{path}: no labels file {label_file.name} beside it (CIFAR-10.1 ships both)")
            images, labels = np.load(path, allow_pickle=False), np.load(label_file, allow_pickle=False)
        else:
            raise UserError(
                f"{path} is neither CIFAR-10.1 (*_data.npy with *_labels.npy) nor CIFAR-10.2 (.npz with images, labels)"
            )
    except (ValueError, OSError, EOFError) as err:
        raise UserError(
            f"{path} is not a plain numpy array file ({str(err).splitlines()[0]}); re-download it"
        ) from None
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise UserError(f"{path}: images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if len(images) == 0:  # refused on loading, before the corrupted sets are scored
        raise UserError(f"{path} holds no images; pass the natural-shift set's file itself (or leave it out)")
    if images.dtype != np.uint8:
        raise UserError(f"{path}: images must be uint8 pixels 0..255, got {images.dtype}; {pixel_fix(images)}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(
            f"{path}: {len(images)} images need {len(images)} integer labels, got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def write_batches(root: str | Path, train: Split, test: Split, per_batch: int | None = None) -> Path:
    """Write arrays in the official python batch layout (used by tests and tools)."""
    folder = Path(root) / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = per_batch or -(-len(train) // 5)

    def dump(name: str, split: Split) -> None:
        rows = split.images.transpose(0, 3, 1, 2).reshape(len(split), -1)
        payload = {b"data": rows, b"labels": [int(v) for v in split.labels], b"batch_label": name.encode()}
        buf = io.BytesIO()
        pickle.dump(payload, buf, protocol=2)
        (folder / name).write_bytes(buf.getvalue())

    for i, name in enumerate(TRAIN_FILES):
        dump(
            name,
            Split(train.images[i * per_batch : (i + 1) * per_batch], train.labels[i * per_batch : (i + 1) * per_batch]),
        )
    dump(TEST_FILE, test)
    return folder
