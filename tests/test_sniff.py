"""distill.files.sniff: what a file is, from its first bytes; every data input is checked with it."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from distill.data import load_shift_set, load_unlabeled
from distill.errors import UserError
from distill.files import sniff


def test_each_kind_is_named(tmp_path):
    x = np.zeros((2, 32, 32, 3), np.uint8)
    (tmp_path / "p").write_bytes(pickle.dumps({"data": x}, protocol=2))
    (tmp_path / "p5").write_bytes(pickle.dumps({"data": x}, protocol=5))
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "z.npz", images=x)
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.pt")
    (tmp_path / "g").write_bytes(gzip.compress(b"abc"))
    (tmp_path / "e").write_bytes(b"")
    (tmp_path / "d").mkdir()
    (tmp_path / "txt").write_text("hello")
    kinds = {p.name: sniff(p) for p in tmp_path.iterdir()} | {"nope": sniff(tmp_path / "nope")}
    assert kinds == {
        "p": "pickle", "p5": "pickle", "a.npy": "a numpy .npy array", "z.npz": "a numpy .npz archive",
        "t.pt": "a torch.save file", "g": "a gzip-compressed file", "e": "an empty file", "d": "a folder",
        "txt": "unknown", "nope": "missing",
    }  # fmt: skip


def test_transfer_set_and_shift_set_name_the_wrong_kind(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "images.npy")
    with pytest.raises(UserError, match="images.npy is a torch.save file, not a pickle or a numpy .npy array"):
        load_unlabeled([str(tmp_path / "images.npy")])
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / "cifar102.npz")  # an .npy named .npz
    with pytest.raises(UserError, match="is a numpy .npy array, not a numpy .npz archive"):
        load_shift_set(tmp_path / "cifar102.npz")
    (tmp_path / "dir_data.npy").mkdir()
    with pytest.raises(UserError, match="is a directory, not a file"):
        load_shift_set(tmp_path / "dir_data.npy")
