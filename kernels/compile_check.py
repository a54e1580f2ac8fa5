"""Compile the cross-attention kernels ahead of time for a CUDA architecture, without a GPU.

    python -m instructavatar.kernels.compile_check [--arch 90] [--dtypes float16,bfloat16]

Runs Triton's front end, the NVIDIA backend and ptxas on every autotune config at the demo and paper block sizes,
and prints each binary's registers and stack (spill) bytes when cuobjdump is bundled. Exit status 1 if any config
fails to compile. It catches kernels that interpret correctly but do not compile; it runs nothing (numerical
checks need a GPU: `pytest tests/kernels -m gpu`). Must run with TRITON_INTERPRET unset or 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

SHAPES = {"demo": (192, 4, 64), "paper": (768, 12, 77)}          # d_model, heads, tokens
PTR = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32"}


def _sources(ca, dtype: str, D: int, heads: int, N: int):
    from triton.compiler import ASTSource

    precision = "ieee" if dtype == "float32" else "tf32"
    for config in ca.ATTENTION_CONFIGS:
        sig = {n: PTR[dtype] for n in ("h_ptr", "lnw_ptr", "lnb_ptr", "wq_ptr", "bq_ptr", "k_ptr", "v_ptr")}
        sig.update(bias_ptr="*fp32", y_ptr=PTR[dtype], T="i32", N="i32", eps="fp32", scale="fp32")
        sig.update({n: "i32" for n in ("stride_hb", "stride_ht", "stride_kb", "stride_kn", "stride_vb", "stride_vn",
                                        "stride_biasb", "stride_yb", "stride_yt")})
        const = dict(D=D, DH=D // heads, DH_PAD=ca._pad(D // heads), N_PAD=ca._pad(N), UPCAST=False,
                     PRECISION=precision, **config.kwargs)
        sig.update({n: "constexpr" for n in const})
        yield "attention", config, ASTSource(ca._ln_q_attention_kernel, sig, constexprs=const)
    for config in ca.OUTPUT_CONFIGS:
        sig = {n: PTR[dtype] for n in ("y_ptr", "wo_ptr", "bo_ptr", "const_ptr", "h_ptr", "out_ptr")}
        sig.update({n: "i32" for n in ("R", "T", "stride_cb", "stride_hb", "stride_ht")})
        const = dict(D=D, UPCAST=False, PRECISION=precision, **config.kwargs)
        sig.update({n: "constexpr" for n in const})
        yield "output", config, ASTSource(ca._out_proj_residual_kernel, sig, constexprs=const)


def _resources(triton, cubin: bytes) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return ""
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    words = " ".join(line for line in out.splitlines() if "REG:" in line).split()
    return " ".join(w for w in words if w.split(":")[0] in ("REG", "STACK"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200, 80: A100)")
    ap.add_argument("--dtypes", default="float16,bfloat16")
    ap.add_argument("--shapes", default="demo,paper")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        ap.error("TRITON_INTERPRET=1 is set: the interpreter compiles nothing; unset it")
    import triton
    from triton.backends.compiler import GPUTarget

    from . import cross_attention as ca

    target = GPUTarget("cuda", args.arch, 32)
    failures = 0
    for shape in args.shapes.split(","):
        D, heads, N = SHAPES[shape]
        for dtype in args.dtypes.split(","):
            for kernel, config, source in _sources(ca, dtype, D, heads, N):
                label = f"{shape} {dtype} {kernel} {config.kwargs} warps {config.num_warps}"
                try:
                    binary = triton.compile(source, target=target, options={"num_warps": config.num_warps})
                    print(f"ok   {label} {_resources(triton, binary.asm['cubin'])}", flush=True)
                except Exception as err:             # report every config, then fail
                    failures += 1
                    print(f"FAIL {label}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    print(f"triton {triton.__version__}, sm_{args.arch}: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
