"""Seconds of Muon's Newton-Schulz on the student's largest filter bank, a (256, 256 x 3 x 3) matrix, in bf16 (as
PyTorch's Muon runs it) and in float32 (distill.optim.newton_schulz), 3 iterations as kd_fast94_muon takes them.

    python bench/results/cpu-fp32-muon-2026-12-05/ns_matmul.py
"""

import time

import torch
from torch.optim._muon import _zeropower_via_newtonschulz  # PyTorch's own, bf16 inside

from distill.optim import newton_schulz
from distill.precision import cpu_bf16_feature

COEFFICIENTS = (3.4445, -4.7750, 2.0315)
g = torch.randn(256, 2304, generator=torch.Generator().manual_seed(0))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_bf16_feature()}")
for name, fn in (("bf16 (PyTorch's Muon)", _zeropower_via_newtonschulz), ("fp32 (distill)", newton_schulz)):
    fn(g, COEFFICIENTS, 3, 1e-7)  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        fn(g, COEFFICIENTS, 3, 1e-7)
    print(f"{name}: {(time.perf_counter() - start) / 5 * 1000:.1f} ms for 3 iterations of a (256, 2304) matrix")
