"""Files written so that a kill at any instant never leaves one that looks complete but is not.

A file is written under a temporary name, flushed and renamed into place (:func:`write_atomic`); a
directory is built beside its target and swapped in (:func:`staged_directory`, :func:`swap_in`), which
every stage that writes a directory uses. A run directory is held by one run at a time (:class:`RunLock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from distill.errors import UserError, words
from distill.failpoints import failpoint


def write_atomic(path: Path, data: str | bytes, flag: str | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename; a write error is a UserError
    naming its cause and ``flag``, the option that chose the path (default: the command's run-dir option)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(write_error(path, err, flag or words().run_dir)) from None


def write_error(path: Path, err: OSError, flag: str) -> str:
    """One line for a failed write: what happened, and the fix that fits the cause."""
    if err.errno == errno.EISDIR or Path(path).is_dir():
        return f"{path} is a directory; give {flag} the path of a file, not of a directory"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"cannot write {path} ({err.strerror}): the disk is full; free disk space and run again"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write {path} ({err.strerror}): make {Path(path).parent} writable, or choose another "
                f"{flag} in a folder you can write")  # fmt: skip
    return f"cannot write {path} ({err.strerror or err}); choose another {flag}"


def to_json(obj: object, path: Path | str, indent: int | None = 2) -> str:
    """``obj`` as JSON, refusing numbers that are not numbers: a NaN or an infinity is never written (Python's json
    would write ``NaN``, which no strict reader parses and every table would print as a result)."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        raise ValueError(f"refusing to write {path}: {_non_finite(obj) or 'a value'} is NaN or infinite") from None


def _non_finite(obj: object, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the value"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, to_json(obj, path) + "\n")


def file_stamp(path: Path | str) -> tuple[str, int, int]:
    """What identifies a file's content within one command without reading it: (real path, size, mtime in ns)."""
    real = Path(path).resolve()
    st = real.stat()
    return str(real), st.st_size, st.st_mtime_ns


_SHA256: dict[tuple[str, int, int], str] = {}  # file_stamp -> sha256: each file is hashed once per command


# What a file is, from its first bytes: the inputs' one check of kind (issue 35), so that a torch.save file, an
# .npz or a gzip-compressed pickle given as a pickle is named for what it is, not "truncated".
_MAGIC = (
    (b"\x80\x02", "pickle"), (b"\x80\x03", "pickle"), (b"\x80\x04", "pickle"), (b"\x80\x05", "pickle"),
    (b"\x93NUMPY", "a numpy .npy array"), (b"\x1f\x8b", "a gzip-compressed file"), (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
)  # fmt: skip


def sniff(path: Path | str) -> str:
    """What ``path`` holds, in words: "missing", "a folder", "pickle", "a numpy .npy array", "a torch.save file",
    "a numpy .npz archive", "a zip archive", "a gzip-compressed file", ..., "an empty file", or "unknown"."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unknown"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged zip archive"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a torch.save file"
        return "a numpy .npz archive" if names and all(n.endswith(".npy") for n in names) else "a zip archive"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "unknown"  # protocol-0/1 pickles, text: the reader decides


def check_kind(path: Path | str, expected: tuple[str, ...], what: str, fix: str) -> None:
    """Refuse, in one line, a ``path`` that is missing, a folder, or sniffed as a kind not in ``expected``.
    "unknown" and "an empty file" pass: the reader has its own words for a file it cannot parse."""
    kind = sniff(path)
    if kind == "missing":
        raise UserError(f"{what} not found: {path}; {fix}")
    if kind == "a folder":
        raise UserError(f"{path} is a directory, not a file; give the {what} itself")
    if kind not in ("unknown", "an empty file", *expected):
        raise UserError(f"{path} is {kind}, not {' or '.join(_kind_words(k) for k in expected)}; {fix}")


def _kind_words(kind: str) -> str:
    return "a pickle" if kind == "pickle" else kind


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes; hashed once per process while its stamp (:func:`file_stamp`) stays the same."""
    stamp = file_stamp(path)
    if stamp not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA256[stamp] = h.hexdigest()
    return _SHA256[stamp]


def check_writable(folder: Path, flag: str | None = None) -> None:
    """Create ``folder`` and prove a file can be written there, before any work starts (``flag``: the option that
    chose it; default the command's run-dir option)."""
    flag = flag or words().run_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        fix = f"make it writable, or choose another {flag}" if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) \
            else f"choose another {flag}"  # fmt: skip
        raise UserError(f"output dir {folder} cannot be written ({err.strerror or err}); {fix}") from None


def check_distinct(out: Path, inputs: list[Path], flag: str) -> None:
    """Refuse an output path that is one of the command's inputs (the same file, through links too) or a
    folder holding one: writing it would replace the input."""
    out = Path(out)
    for source in inputs:
        source = Path(source)
        if not source.exists():
            continue
        same = out.exists() and os.path.samefile(out, source)
        holds = source.resolve().is_relative_to(out.resolve()) and out.resolve() != source.resolve()
        if same or (holds and out.is_dir()):
            what = "is" if same else "holds"
            raise UserError(f"{flag} {out} {what} an input of this command ({source}); give another {flag}")


def swap_in(staged: Path, target: Path, old: Path, point: str) -> None:
    """Put the complete directory ``staged`` in the place of ``target``.

    ``target`` (if any) is renamed to ``old``, ``staged`` to ``target``, and ``old`` is deleted: a kill
    at any instant leaves ``target`` whole, or ``old`` and ``staged`` both whole, never a mix. The
    failpoint ``point`` sits between the two renames (see :mod:`distill.failpoints`).
    """
    if target.exists():
        target.rename(old)
    failpoint(point)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(final: Path, point: str):
    """Build a directory beside ``final`` and swap it in whole when the block ends (:func:`swap_in`).

    Yields the staging directory ``.NAME.tmp-PID``; an exception (a Ctrl-C included) removes it and leaves
    ``final`` as it was. What killed runs of the same stage left beside ``final`` (``.NAME.tmp-PID`` or
    ``.NAME.old-PID`` of a process that is gone) is removed first, so a SIGKILL leaves no litter for long.
    """
    final = Path(final)
    for leftover in dead_leftovers(final.parent, f".{final.name}.tmp-*", f".{final.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staged = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    swap_in(staged, final, final.with_name(f".{final.name}.old-{os.getpid()}"), point)


@contextlib.contextmanager
def _host_mutex(directory: Path):
    """Held while inside: one process of this host at a time (an advisory ``flock`` on ``directory``,
    dropped by the kernel when its holder exits, however it exits), where the filesystem has ``flock``."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock (NFS may refuse it on a directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def dead_leftovers(directory: Path, *patterns: str) -> list[Path]:
    """What killed processes left in ``directory``: names matching a pattern that end in ``-PID`` of a process
    (not this one) that is gone."""
    dead = []
    for path in (path for pattern in patterns for path in directory.glob(pattern)):
        pid = path.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            dead.append(path)
    return dead


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``<run dir>/.lock`` holding the PID and host of the run writing there; removed when it ends.

    The lock appears whole or not at all: its holder is written to a private file first, which is then
    hard-linked to ``.lock`` (a link, like ``O_EXCL``, fails if the name exists), so of two runs started
    at once into one directory exactly one gets it and the other always reads who holds it. A lock
    whose process is gone (same host, PID not alive: a SIGKILL) is stale and taken over; runs on one
    host check and take the lock one at a time (``flock`` on the directory, where the filesystem has it),
    so two that find the same stale lock cannot both take it. A lock from another host cannot be checked
    and is refused with how to clear it.
    """

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.NAME
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        with _host_mutex(self.path.parent):
            for leftover in dead_leftovers(self.path.parent, f"{self.NAME}.tmp-*"):  # killed while taking the lock
                leftover.unlink(missing_ok=True)
            for _ in range(3):
                if self._create(me):
                    self.held = True
                    return
                holder = self._holder()
                if holder is None and not self.path.exists():
                    continue  # its run ended in between
                if holder is None or holder["host"] != me["host"] or pid_alive(int(holder["pid"])):
                    raise self._in_use(holder)
                self.path.unlink(missing_ok=True)  # stale: its run was killed
                print(
                    f"note: {self.path.parent} was locked by PID {holder['pid']} (since {holder['started']}), which "
                    f"is gone (killed or crashed); taking the lock over",
                    file=sys.stderr,
                    flush=True,
                )
        raise UserError(f"cannot take {self.path}; delete it if no run is writing to {self.path.parent}")

    def _in_use(self, holder: dict | None) -> UserError:
        who = f"PID {holder['pid']} on {holder['host']} since {holder['started']}" if holder else "another run"
        return UserError(
            f"{self.path.parent} is in use by {who}; wait for that run to end, or, if it is dead, delete {self.path}"
        )

    def _create(self, me: dict) -> bool:
        """Write ``me`` and link it to the lock's name; False if the name is taken."""
        mine = self.path.with_name(f"{self.NAME}.tmp-{me['pid']}")
        mine.write_text(json.dumps(me))
        try:
            os.link(mine, self.path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links (some FUSE and SMB mounts): create it in place
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        finally:
            mine.unlink(missing_ok=True)
        return True

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return holder if {"pid", "host", "started"} <= set(holder) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
