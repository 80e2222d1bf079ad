"""The house rule: no module imports one above it (entry points on top; errors, losses and models at the bottom)."""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Bottom to top. A module may import modules of its own layer or below, never above.
LAYERS = [
    {"distill.errors", "distill.failpoints", "distill.losses", "distill.health", "students", "students.resnet"},
    {"teachers", "teachers.airnet", "distill.files", "distill.data", "distill.precision",
     "distill.host", "distill.compute"},
    {"distill.augment", "distill.models"},
    {"distill.corruptions", "distill.recipe", "distill.engine"},
    {"distill.optim", "distill.devices", "distill.logit_cache", "distill.runs", "distill.shift", "distill.cli"},
    {"distill.trainer"},
    {"distill.cache_logits", "distill.train_teacher", "distill.train_student", "distill.evaluate",
     "distill.export", "distill.report", "distill.run", "distill.__main__", "distill.paper", "distill.inspection"},
    {"bench.bench", "bench.summarize", "bench.predict_speed", "bench.whitening_snr", "bench.loop_profile", "bench.inspect_sets", "bench.student_speed",
     "bench.transfer_table", "bench.conv_crash_sweep", "bench.steps_table", "bench.first_steps", "bench.device"},
]  # fmt: skip
LAYER = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n in LAYER}


SOURCES = sorted(p for d in ("distill", "students", "teachers", "bench") for p in (ROOT / d).glob("*.py"))


def test_every_module_has_a_layer():
    missing = {module_name(p) for p in SOURCES} - set(LAYER) - {"bench", "distill"}  # the empty package inits
    assert not missing, f"add these to LAYERS: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_one_above_it(path):
    me = module_name(path)
    if me not in LAYER:
        return
    above = {n for n in project_imports(path) if LAYER[n] > LAYER[me]}
    assert not above, f"{me} (layer {LAYER[me]}) imports {above}, which sit above it"
