"""train.compile: torch.compile of the training model, on a CPU (inductor's C++ backend).

Its first steps' losses equal eager mode's within 1e-4 (relative) in float32, and a compiled run's
checkpoint, weights, resume and export are those of an eager run: no compile prefixes anywhere.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from distill import export
from tests.conftest import python, synthetic_split, tiny

pytestmark = pytest.mark.slow  # inductor compiles C++ for a minute or so on 2 cores

LOSS_RTOL = 1e-4  # float32; a fused kernel may add in another order, nothing more


def test_the_first_steps_match_eager():
    torch.manual_seed(0)
    eager = timm.create_model("cifar_resnet_tiny", num_classes=10).to(memory_format=torch.channels_last)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model)
    data = synthetic_split(32, 0)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(data.labels)
    losses = {}
    for name, model, params in (("eager", eager, eager), ("compiled", compiled, compiled_model)):
        sgd = torch.optim.SGD(params.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            sgd.zero_grad()
            loss.backward()
            sgd.step()
            losses[name].append(loss.item())
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=LOSS_RTOL)


def test_a_compiled_run_resumes_and_exports(synthetic_dir, tmp_path):
    run = tmp_path / "compiled"
    args = ["distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(run)]
    overrides = tiny(synthetic_dir, "train.epochs=2", "train.compile=true", "train.mixed_precision=no")
    killed = python(*args, *overrides, env={"DISTILL_FAILPOINT": "epoch.logged@2"})  # after checkpoint 1
    assert killed.returncode == -9, killed.stderr[-2000:]
    for name in load_file(str(next((run / "state").glob("*.safetensors")))):
        assert "_orig_mod" not in name
    resumed = python(*args, "--resume", *overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Final test accuracy:" in resumed.stdout
    weights = load_file(str(run / "model.safetensors"))
    assert weights and not any("_orig_mod" in k for k in weights)
    pkl = tmp_path / "test.pkl"
    test = synthetic_split(20, 3)
    import pickle

    pkl.write_bytes(pickle.dumps({"data": test.images, "ids": list(range(20))}))
    check = export.export(run, pkl, tmp_path / "out.csv")
    assert check["rows"] == 20
