"""`instructavatar export`: write a configuration's components as ONNX graphs (or TensorRT engines) + manifest.

  instructavatar export --config demo --format onnx --out instructavatar/assets/demo/onnx
  instructavatar export --config paper --random-weights --format onnx --out paper_onnx
  instructavatar export --config demo --format onnx --precision int8 --out demo_int8

`--feed-weights` (on by default for the shipped demo checkpoint) stores graph structure only: the runtime feeds
every weight from the checkpoint and the MiniLM package at load time (export/README.md). Needs torch and onnx.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("export", help="export the model's components to ONNX (or TensorRT) with a manifest",
                       description="Writes one graph per component of export/specs.py and manifest.json to --out.")
    p.add_argument("--config", default="demo", help="demo or paper (default demo)")
    p.add_argument("--format", default="onnx", choices=("onnx", "trt"), help="onnx (default) or trt")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp32 (default); int8: static quantization of the components where it pays (CPU); "
                        "fp16: TensorRT engines")
    p.add_argument("--weights", help="checkpoint (.safetensors); default: the shipped demo checkpoint")
    p.add_argument("--random-weights", action="store_true", help="export random weights (plumbing, paper config)")
    p.add_argument("--feed-weights", choices=("auto", "yes", "no"), default="auto",
                   help="store weights by reference, fed from the checkpoint at load (auto: yes when a weights "
                        "file is used)")
    p.add_argument("--components", help="comma-separated subset (default: every runtime component)")
    p.add_argument("--no-check", action="store_true", help="skip the ORT-vs-torch parity check of each graph")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..cli import InputError, UsageError
    from ..engine.config import ConfigError, get_config

    try:
        cfg = get_config(args.config)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.format == "trt":
        try:
            from ..export import trt_build  # noqa: F401 - the GPU helper's builder, where present
        except ImportError:
            raise UsageError("--format trt needs TensorRT (tensorrt>=10) and the TensorRT builder; neither is "
                             "available here. Export ONNX (--format onnx) and build engines on the GPU "
                             "machine") from None
        return trt_build.main_from_args(args)
    if args.precision == "fp16":
        raise UsageError("--precision fp16 is for TensorRT engines (--format trt); ONNX exports are fp32 or int8")
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise UsageError(f"export needs torch and onnx ({e.name} is missing): pip install 'instructavatar[export]'") \
            from None
    from ..engine.loader import MissingWeightsError, _weights_path, build_model
    from ..engine.modules.weights import WeightsError
    from ..export.onnx_export import export_onnx

    try:
        path = _weights_path(cfg, args.weights, args.random_weights)
        model = build_model(cfg, path, random_weights=path is None)
    except (MissingWeightsError, WeightsError) as e:
        raise InputError(str(e)) from None
    feed = args.feed_weights == "yes" or (args.feed_weights == "auto" and path is not None)
    if feed and path is None:
        raise UsageError("--feed-weights yes needs a weights file (--weights FILE)")
    out = Path(args.out)
    comps = args.components.split(",") if args.components else None
    print(f"exporting {cfg.name} to {out} (fp32{', weights fed from ' + str(path) if feed else ''})", file=sys.stderr)
    manifest = export_onnx(model, cfg, out, weights=path, feed_weights=feed, components=comps,
                           check=not args.no_check, log=lambda m: print(m, file=sys.stderr))
    if args.precision == "int8":
        from ..export.quantize import quantize_folder

        quantize_folder(out, cfg, path, log=lambda m: print(m, file=sys.stderr))
    total = sum(c["bytes"] for c in manifest["components"].values())
    print(f"wrote {len(manifest['components'])} graphs ({total / 1e6:.1f} MB) and manifest.json to {out}")
    return 0
