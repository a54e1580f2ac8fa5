"""Kernel tests run the Triton kernels under the interpreter on CPU tensors, unless the GPU tests are selected.

Default run (any machine): TRITON_INTERPRET=1, the kernels interpreted on CPU tensors. `-m gpu` on a CUDA machine:
compiled and autotuned on the device (tests/kernels/test_gpu.py). TRITON_INTERPRET must be set before
instructavatar.kernels.cross_attention (its triton.jit) is imported; pytest_configure of this file runs before any
test module of this folder is imported.
"""

import os

import torch


def pytest_configure(config):
    expr = config.getoption("markexpr", "") or ""
    wants_gpu = "gpu" in expr.replace("not gpu", "")
    if not (wants_gpu and torch.cuda.is_available()):
        os.environ.setdefault("TRITON_INTERPRET", "1")
