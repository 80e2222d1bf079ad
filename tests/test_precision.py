"""train.mixed_precision=auto: bf16 where the arithmetic is native, fp32 elsewhere, forced values obeyed."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState

from distill import precision, train_teacher
from distill.engine import predict
from distill.errors import UserError
from distill.precision import cpu_flags_bf16, resolve_precision
from tests.conftest import synthetic_split, tiny

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
ICELAKE = "processor\t: 0\nflags\t\t: fpu sse sse2 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    "machine, text, expected",
    [
        ("x86_64", ZEN4, "avx512_bf16"),
        ("x86_64", SAPPHIRE, "amx_bf16"),
        ("x86_64", ICELAKE, None),  # AVX-512 without its BF16 extension: bf16 is emulated
        ("aarch64", GRAVITON3, "bf16"),
        ("aarch64", ICELAKE, None),
        ("x86_64", "", None),
    ],
)
def test_the_probe_reads_cpu_flags(machine, text, expected):
    assert cpu_flags_bf16(text, machine) == expected


@pytest.mark.parametrize(
    "feature, expected",
    [("avx512_bf16", ("bf16", "auto: this CPU has avx512_bf16")), (None, ("no", "auto: this CPU has no native bf16"))],
)
def test_auto_on_a_cpu_follows_the_probe(monkeypatch, feature, expected):
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: feature)
    got = resolve_precision("auto", "cpu")
    assert got.mode == expected[0] and got.why.startswith(expected[1])


def test_forced_values_and_the_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    assert resolve_precision("bf16", "cpu").mode == "bf16"  # forced, even where it is emulated
    assert resolve_precision("no", "cpu").label == "fp32 (recipe)"
    assert resolve_precision("auto", "cuda").mode == "bf16"
    assert resolve_precision("fp16", "cuda").mode == "fp16"
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        resolve_precision("fp16", "cpu")


@pytest.fixture
def own_accelerator_state():
    """Accelerate keeps one precision per process: give a test its own, and put the suite's back after it."""
    saved = dict(AcceleratorState._shared_state)
    AcceleratorState._shared_state.clear()
    yield
    AcceleratorState._shared_state.clear()
    AcceleratorState._shared_state.update(saved)


@pytest.mark.parametrize(
    "feature, setting, mode",
    [(None, "auto", "no"), ("avx512_bf16", "auto", "bf16"), (None, "bf16", "bf16"), ("avx512_bf16", "no", "no")],
)
def test_a_short_run_in_each_precision(
    own_accelerator_state, monkeypatch, synthetic_dir, tmp_path, capsys, feature, setting, mode
):
    """A CPU without native bf16 still trains in fp32; with it (or forced) in bf16, and the header says which."""
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: feature)
    out = tmp_path / "t"
    overrides = tiny(synthetic_dir, "train.epochs=1", "cache.views=1", f"train.mixed_precision={setting}")
    [result] = train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(out), *overrides])
    header = capsys.readouterr().out.replace("\n", " ")
    assert f"precision {resolve_precision(setting, 'cpu').label}" in " ".join(header.split())
    assert json.loads((out / "summary.json").read_text())["mixed_precision"] == mode
    assert 0.0 <= result.test_accuracy <= 1.0


def test_predict_follows_the_rule(monkeypatch):
    """Export and evaluation predict in the run's precision, resolved by the one Compute setup training uses."""
    from distill import compute

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    images = synthetic_split(64, 0).images
    model(torch.zeros(1, 3, 32, 32))
    seen = []
    real = precision.autocast
    monkeypatch.setattr(compute, "autocast", lambda mode, device: seen.append(mode) or real(mode, device))
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: "avx512_bf16")
    predict(model, images, None, compute=compute.Compute.resolve("auto"))
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    predict(model, images, None, compute=compute.Compute.resolve("auto"))
    predict(model, images, None, compute=compute.Compute.resolve("bf16"))
    predict(model, images, None)  # the default: auto
    assert seen == ["bf16", "no", "bf16", "no"]


def test_one_compute_setup_everywhere_and_no_private_accelerate_state():
    """Training (devices), caching, evaluation, export, the shift suite and distill-inspect take their device,
    precision and allocator from distill.compute; nothing reads Accelerate's private state."""
    import re

    from tests.conftest import ROOT

    for path in (ROOT / "distill").glob("*.py"):
        text = path.read_text()
        assert "_shared_state" not in text, path.name
        if path.name not in ("compute.py", "host.py", "precision.py"):
            assert not re.search(r"resolve_precision\(|keep_freed_memory\(|torch\.device\(\"cuda\" if", text), path.name


@pytest.mark.parametrize("feature, ns", [(None, "fp32"), ("avx512_bf16", "bf16")])
def test_a_muon_run_says_its_newton_schulz_precision(
    own_accelerator_state, monkeypatch, synthetic_dir, tmp_path, capsys, feature, ns
):
    """train.optimizer=muon: the header and summary.json say what Muon's Newton-Schulz ran in (auto resolved)."""
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: feature)
    out = tmp_path / "t"
    muon = ["train.optimizer=muon", "train.lookahead=false", "train.mixed_precision=no"]
    overrides = tiny(synthetic_dir, "train.epochs=1", "cache.views=1", *muon)
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(out), *overrides])
    header = " ".join(capsys.readouterr().out.split())
    assert f"Muon's Newton-Schulz in {ns}" in header
    assert json.loads((out / "summary.json").read_text())["muon_ns_precision"] == ns
