"""Kernel tests run the Triton kernels under the interpreter on CPU tensors when there is no CUDA device.

TRITON_INTERPRET must be set before instructavatar.kernels.cross_attention (and its triton.jit) is imported,
so it is set here, at collection, before any test module of this folder is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
