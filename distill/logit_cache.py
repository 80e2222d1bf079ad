"""The teacher's logit cache: augmentation parameters and logits on exactly those views, on disk.

Layout of a cache directory (all arrays are ``.npy``, memory-mappable with ``np.load(mmap_mode="r")``)::

    meta.json         format version, teachers (model, weights sha256, run dir, test accuracy of each),
                      data (fingerprint, images), the transfer set (fingerprint, images, files) or null,
                      augmentation spec, views K, seed, files' sha256
    logits.npy        (max(K, 1), N, 10) float16: teacher logits of view set k for image n (the mean
                      over the teachers when the cache is built from an ensemble)
    <key>.npy         (K, N): one array per view parameter of the augmentation spec (absent when K = 0):
                      dy dx (int8) and flip (bool) always; cy cx (uint8) with cutout; op (uint8) mag
                      (int8) with a policy; partner (int32) lam (float32) by bx bh bw (uint8) with
                      mixup / cutmix (see :mod:`distill.augment`)

With ``K = 0`` the logits are of the un-augmented images (classic offline KD). A student replays
view set ``e mod K`` in epoch ``e``. The N images are the training images, then those of the transfer set
(``kd.unlabeled``: unlabelled images the student distils on), each on views of its own: one pool, so a
mixing partner may come from either part. The cache is written to a temporary directory and renamed at
the end, so a reader never sees half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from distill.augment import AugmentSpec, apply_views, normalize, sample_views, seeded_generator, view_keys
from distill.data import Split
from distill.engine import StopRequest
from distill.errors import Stopped, UserError
from distill.failpoints import failpoint
from distill.files import sha256_file, staged_directory, to_json

FORMAT_VERSION = 3  # 2: a list of teachers (an ensemble's logits are averaged); 3: view keys follow the spec
REBUILD = "rebuild it with distill/cache_logits.py --teacher TEACHER_RUN_DIR and the same data/augment settings"
REBUILD_WITH = "distill/cache_logits.py --teacher TEACHER_RUN_DIR --unlabeled FILE ..."


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's content depends on, files by content (STYLE 16): its one identity.

    :attr:`key` names a cache distill-run builds (``cache-<student>-<key>``, over the student's side: the teachers
    are its run's own), is written into ``meta.json`` and into each student's ``run.json``, and is what is compared
    when a cache is reused; :meth:`mismatch` says which field differs, as a typed :class:`Mismatch`. A field set to
    None in an expected spec is not asked for (a student takes any teacher).
    """

    # In the order a mismatch is reported: the most telling first (another split is also other training data).
    teachers: tuple[str, ...] | None  # the sha256 of each teacher's model.safetensors, in order (an ensemble: several)
    transfer: str | None  # the transfer set's fingerprint ("" without one)
    val_size: int | None  # the held-out split the training images exclude
    val_seed: int | None
    data: str | None  # the training images' and labels' fingerprint (Split.fingerprint)
    images: int | None  # how many
    views: int | None  # view sets K
    augment: str | None  # the augmentation spec as canonical JSON ("" with views = 0: the images un-augmented)
    seed: int | None  # seeds the views' parameters

    @property
    def key(self) -> str:
        """16 hex digits of every field: equal exactly when the specs are."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def without_teachers(self) -> CacheSpec:
        return dataclasses.replace(self, teachers=None)

    @classmethod
    def of(
        cls, teachers: list[str] | None, train: Split, held_out: tuple[int, int], spec: AugmentSpec, views: int, seed: int,
        unlabeled: Split | None,
    ) -> CacheSpec:  # fmt: skip
        """The spec of a cache of ``teachers`` (weights sha256; None: any) over ``train`` and ``unlabeled``."""
        return cls(
            teachers=tuple(teachers) if teachers is not None else None,
            data=train.fingerprint(),
            images=len(train),
            val_size=held_out[0],
            val_seed=held_out[1],
            views=views,
            augment=json.dumps(spec.to_dict(), sort_keys=True) if views else "",
            seed=seed,
            transfer=unlabeled.fingerprint() if unlabeled is not None and len(unlabeled) else "",
        )

    @classmethod
    def from_meta(cls, meta: dict) -> CacheSpec:
        """The spec a cache's meta.json describes (every format-3 cache records each field)."""
        data = meta["data"]
        return cls(
            teachers=tuple(t["weights_sha256"] for t in meta["teachers"]),
            data=data["fingerprint"],
            images=data["num_images"],
            val_size=data.get("val_size", 0),
            val_seed=data.get("val_seed", 0),
            views=meta["views"],
            augment=json.dumps(meta["augment"], sort_keys=True) if meta["views"] else "",
            seed=meta.get("seed", 0),
            transfer=(meta.get("unlabeled") or {}).get("fingerprint", ""),
        )

    def mismatch(self, want: CacheSpec) -> Mismatch | None:
        """The first field (in declaration order) where this spec is not what ``want`` asks for, or None."""
        for f in dataclasses.fields(self):
            asked = getattr(want, f.name)
            if asked is not None and getattr(self, f.name) != asked:
                return Mismatch(f.name, self._why(f.name, want))
        return None

    def _why(self, field: str, want: CacheSpec) -> str:
        have = getattr(self, field)
        asked = getattr(want, field)
        if field == "teachers":
            return (f"it holds logits of teacher weights {', '.join(w[:12] for w in have)}, the teachers are now "
                    f"{', '.join(w[:12] for w in asked)}")  # fmt: skip
        if field in ("data", "images"):
            return (f"it was built on {self.images} training images (fingerprint {self.data[:12]}), this run uses "
                    f"{want.images} (fingerprint {want.data[:12]}): check data.train_limit and --data-dir")  # fmt: skip
        if field in ("val_size", "val_seed"):
            return (
                f"it was built holding out data.val_size={self.val_size} (data.val_seed={self.val_seed}), this run holds "
                f"out data.val_size={want.val_size} (data.val_seed={want.val_seed}); teacher, cache and student must "
                f"agree on the split: run the student with the cache's, or train a teacher on the student's split (its "
                f"images held out from the teacher too) and cache that one"
            )
        if field == "augment":
            return f"it has augmentation {have or '(none)'}, the recipe has {asked or '(none)'}: set augment.* to match"
        if field == "views":
            return f"it has {have} view sets, the recipe asks for cache.views={asked}: set cache.views={have}"
        if field == "seed":
            return f"its views were drawn with cache.seed={have}, the recipe says cache.seed={asked}: set cache.seed={have}"
        if have == "":
            return (f"it was built without a transfer set, and the recipe distils on unlabelled images (kd.unlabeled): "
                    f"rebuild the cache with them: {REBUILD_WITH}")  # fmt: skip
        if asked == "":
            return ("it holds a transfer set, and the recipe names none: give the same files as kd.unlabeled "
                    "(--unlabeled), or use a cache built without them")  # fmt: skip
        return (f"it holds the teacher's logits of other unlabelled images (fingerprint {have[:12]}) than kd.unlabeled "
                f"(fingerprint {asked[:12]}): give the files the cache was built on, or rebuild it: {REBUILD_WITH}")  # fmt: skip


@dataclass(frozen=True)
class Mismatch:
    """Why a cache cannot serve: ``kind`` is a :class:`CacheSpec` field, or ``absent`` (no cache there yet),
    ``unreadable`` (damaged, of another format version, or stale against its teachers' files); callers branch on
    the kind, and show the reason."""

    kind: str
    reason: str


@torch.inference_mode()
def _teacher_logits(
    teachers: list,
    images: torch.Tensor,
    views: dict[str, torch.Tensor] | None,
    spec: AugmentSpec,
    batch_size: int,
    accelerator: Accelerator,
) -> np.ndarray:
    """Logits (N, C) float16 of ``images`` under ``views`` (None = un-augmented), all processes helping.

    Each batch of views is made once and given to every teacher; an ensemble's logits are each rounded
    to float16, then averaged in float32. Process r computes the contiguous chunk r of the images;
    chunks are gathered and trimmed, so the result has one row per image in order.
    """
    n, world, rank = len(images), accelerator.num_processes, accelerator.process_index
    per = -(-n // world)
    lo, hi = min(rank * per, n), min((rank + 1) * per, n)
    outputs = []
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        if views is None:
            x = normalize(images[start:stop])
        else:
            x = apply_views(images, views, torch.arange(start, stop, device=images.device), spec)
        with accelerator.autocast():
            each = [teacher(x).float() for teacher in teachers]
        each = torch.stack(each).half()  # (T, B, C); outside autocast, which on a CPU refuses to stack float16
        outputs.append(each[0] if len(teachers) == 1 else each.float().mean(0).half())
    local = torch.cat(outputs) if outputs else torch.empty(0, 10, device=accelerator.device, dtype=torch.float16)
    padded = torch.zeros(per, local.shape[1] if local.numel() else 10, device=accelerator.device, dtype=torch.float16)
    padded[: len(local)] = local
    gathered = accelerator.gather(padded)  # (world * per, C), chunk r from process r
    return gathered[:n].cpu().numpy()


def build_cache(
    teachers: list,
    train: Split,
    spec: AugmentSpec,
    views: int,
    seed: int,
    batch_size: int,
    accelerator: Accelerator,
    out_dir: Path,
    teacher_info: list[dict],
    held_out: dict | None = None,
    unlabeled: Split | None = None,
    unlabeled_files: list[str] | None = None,
) -> Path:
    """Run the frozen teachers over K view sets of the training images (and the ``unlabeled`` transfer set
    after them, read from ``unlabeled_files``) and write the cache to ``out_dir``.

    Each teacher runs in ``eval()`` mode under ``torch.inference_mode()``, unwrapped on
    ``accelerator.device``; with several teachers (an ensemble) the cache holds the mean of their
    logits on each view. Only the main process writes. ``held_out`` records the validation split the
    training images exclude (``{"val_size": N, "val_seed": S}``), which a student must share.
    """
    start = time.perf_counter()
    for teacher in teachers:
        teacher.eval().to(accelerator.device)
    pool = train.images if unlabeled is None or not len(unlabeled) else np.concatenate([train.images, unlabeled.images])
    images = torch.from_numpy(pool).to(accelerator.device)

    def mean_logits(device_views: dict[str, torch.Tensor] | None) -> np.ndarray:
        return _teacher_logits(teachers, images, device_views, spec, batch_size, accelerator)

    arrays: dict[str, np.ndarray] = {}
    if views == 0:
        arrays["logits"] = mean_logits(None)[None]
    else:
        logits, params = [], {k: [] for k in view_keys(spec)}
        every = max(1, views // 8)  # about 8 progress lines, whatever the view count, and always the first
        with StopRequest() as stop:  # SIGTERM / SIGUSR1: stop after this view set, writing nothing, and say so
            for k in range(views):
                view = sample_views(len(pool), spec, seeded_generator("cache", seed, k), index=k, seed=seed)
                logits.append(mean_logits({key: v.to(accelerator.device) for key, v in view.items()}))
                for key in params:
                    params[key].append(view[key].numpy())
                failpoint("cache.view")
                if accelerator.is_main_process and (k == 0 or (k + 1) % every == 0 or k + 1 == views):
                    spent = time.perf_counter() - start
                    left = spent / (k + 1) * (views - k - 1)
                    print(f"cache: view set {k + 1}/{views} ({len(pool):,} images each), {spent:.0f} s, "
                          f"about {left:.0f} s left", flush=True)  # fmt: skip
                if (signum := stop.agreed(accelerator)) and k + 1 < views:
                    raise Stopped(
                        f"{signal.Signals(signum).name} received after view set {k + 1} of {views}; the cache was "
                        f"not written (nothing of it is left); run the same command again to build it",
                        signum,
                    )
        arrays["logits"] = np.stack(logits)
        arrays.update({key: np.stack(v) for key, v in params.items()})
    if not np.isfinite(arrays["logits"]).all():
        raise UserError("the teacher's logits contain NaN or inf; retrain the teacher (it diverged) before caching")
    if accelerator.is_main_process:
        meta = {
            "format_version": FORMAT_VERSION,
            "teachers": teacher_info,
            "data": {"fingerprint": train.fingerprint(), "num_images": len(train), **(held_out or {})},
            "unlabeled": transfer_info(unlabeled, unlabeled_files),
            "augment": spec.to_dict(),
            "views": views,
            "seed": seed,
            "num_classes": int(arrays["logits"].shape[-1]),
            "build_seconds": round(time.perf_counter() - start, 3),  # the teachers' forward passes, on this device
        }
        meta["key"] = CacheSpec.from_meta(meta).key  # its identity, for a reader (derived from the fields above)
        _write_atomic(out_dir, arrays, meta)
    accelerator.wait_for_everyone()
    return out_dir


def transfer_info(unlabeled: Split | None, files: list[str] | None) -> dict | None:
    """What a cache (and a run) records of its transfer set: the images' fingerprint, count and files."""
    if unlabeled is None or not len(unlabeled):
        return None
    return {
        "fingerprint": unlabeled.fingerprint(),
        "num_images": len(unlabeled),
        "files": [str(Path(f).resolve()) for f in files or []],
    }


def _write_atomic(out_dir: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write the cache into a temporary sibling directory, then rename it to ``out_dir``.

    ``meta.json`` is written last; a reader trusts only a directory named ``out_dir`` that has it.
    Temporary directories left by killed builds are removed first; a write error (disk full)
    removes this build's and leaves any previous cache in place.
    """
    out_dir = Path(out_dir)
    try:
        with staged_directory(out_dir, "cache.swap") as tmp:
            meta["files"] = {}
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", arr)
                meta["files"][f"{name}.npy"] = sha256_file(tmp / f"{name}.npy")
            failpoint("cache.files")
            (tmp / "meta.json").write_text(to_json(meta, out_dir / "meta.json"))
            for f in tmp.iterdir():  # flush data before the rename makes it visible
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
    except OSError as err:
        raise UserError(
            f"cannot write the cache {out_dir} ({err.strerror or err}); free disk space and rerun "
            f"distill/cache_logits.py --teacher TEACHER_RUN_DIR"
        ) from None


@dataclass
class LogitCache:
    """A validated cache: ``logits`` (max(K,1), N, C) float16 and ``views[key]`` (K, N), memory-mapped."""

    path: Path
    meta: dict
    logits: np.ndarray
    views: dict[str, np.ndarray]

    @property
    def num_views(self) -> int:
        return int(self.meta["views"])

    @property
    def cache_spec(self) -> CacheSpec:
        return CacheSpec.from_meta(self.meta)

    @property
    def key(self) -> str:
        """The cache's identity: its :class:`CacheSpec`'s key (what a student records in run.json)."""
        return self.cache_spec.key

    @property
    def files_key(self) -> str:
        """A hash of its arrays' sha256: what students trained before the spec recorded (read, never written)."""
        return hashlib.sha256(json.dumps(self.meta["files"], sort_keys=True).encode()).hexdigest()[:16]

    @property
    def teacher_weights(self) -> list[str]:
        """The sha256 of each teacher's ``model.safetensors`` the logits came from, in order."""
        return [t["weights_sha256"] for t in self.meta["teachers"]]

    @property
    def spec(self) -> AugmentSpec:
        return AugmentSpec(**self.meta["augment"])

    @classmethod
    def load(cls, path: str | Path) -> "LogitCache":
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise UserError(f"{path} is not a logit cache (no meta.json); build one with distill/cache_logits.py")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{meta_file} is corrupt; rebuild the cache with distill/cache_logits.py") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"cache {path} has format version {meta.get('format_version')}, this code reads {FORMAT_VERSION}; "
                f"rebuild it with distill/cache_logits.py --teacher TEACHER_RUN_DIR"
            )
        for name, digest in meta.get("files", {}).items():
            f = path / name
            if not f.is_file() or sha256_file(f) != digest:
                raise UserError(f"cache file {f} is missing or does not match meta.json; rebuild the cache")
        try:
            logits = np.load(path / "logits.npy", mmap_mode="r", allow_pickle=False)
            keys = view_keys(AugmentSpec(**meta["augment"])) if meta["views"] > 0 else ()
            views = {k: np.load(path / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in keys}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"cache {path} is unreadable ({err}); rebuild it") from None
        n, k = meta["data"]["num_images"] + (meta.get("unlabeled") or {}).get("num_images", 0), max(meta["views"], 1)
        if logits.shape != (k, n, meta["num_classes"]) or any(v.shape != (k, n) for v in views.values()):
            raise UserError(f"cache {path}: array shapes do not match meta.json; rebuild it")
        cache = cls(path, meta, logits, views)
        cache._check_teacher_current()
        return cache

    def _check_teacher_current(self) -> None:
        """Each teacher run the cache came from that is still on disk must hold the cached weights."""
        for teacher in self.meta["teachers"]:
            run_dir = teacher.get("run_dir")
            weights = Path(run_dir) / "model.safetensors" if run_dir else None
            if weights is None or not weights.is_file():
                continue
            now = sha256_file(weights)
            if now != teacher["weights_sha256"]:
                raise UserError(
                    f"cache {self.path} is stale: it holds logits of teacher weights "
                    f"{teacher['weights_sha256'][:12]}, but {weights} is now {now[:12]}; "
                    f"rebuild it with distill/cache_logits.py --teacher {run_dir}"
                )

    def check_matches(
        self,
        train: Split,
        spec: AugmentSpec,
        views: int,
        data_cfg,
        unlabeled: Split | None = None,
        seed: int | None = None,
    ) -> None:
        """Refuse a cache that is not the one the student's recipe describes (any teachers): one comparison of
        :class:`CacheSpec` fields, the same the directory key and distill-run's reuse decision make."""
        want = CacheSpec.of(None, train, (data_cfg.val_size, data_cfg.val_seed), spec, views, seed, unlabeled)
        if seed is None:
            want = dataclasses.replace(want, seed=None)  # a caller that does not know the recipe's seed
        found = self.cache_spec.mismatch(want)
        if found is not None:
            fix = "" if found.kind in ("val_size", "val_seed", "transfer") else f"; or {REBUILD}"
            raise UserError(f"cache {self.path}: {found.reason}{fix}")

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """Teacher logits (N, C) and view parameters (or None for K = 0) to replay in ``epoch``."""
        if self.num_views == 0:
            return np.array(self.logits[0]), None
        k = epoch % self.num_views
        return np.array(self.logits[k]), {key: np.array(v[k]) for key, v in self.views.items()}
