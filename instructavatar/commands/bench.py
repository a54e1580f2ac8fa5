"""`instructavatar bench`: latency benchmark of this machine (components, pipeline, scaling, efficiency,
server) as a table, a JSON report and PNG plots; `--compare A.json B.json` prints two reports side by side.

    instructavatar bench --quick --threads 1 --out bench_out        # ~1 minute on an idle core
    instructavatar bench --config demo --backend all --out bench_full
    instructavatar bench --compare bench_a/bench.json bench_b/bench.json

The harness is benchmarks/harness.py (docs/bench.md explains every figure).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    b = sub.add_parser("bench", help="latency benchmark: components, pipeline, scaling, efficiency (JSON + plots)",
                       description=__doc__.split("\n\n")[0])
    b.add_argument("--config", default="demo", help="demo or paper (default demo; paper runs random weights)")
    b.add_argument("--backend", default="auto", help="auto, a backend name (torch, ...), or all (default auto)")
    b.add_argument("--onnx-dir", default=None,
                   help="export folder for the ort backend (instructavatar export --format onnx --out DIR)")
    b.add_argument("--threads", type=int, default=None, help="compute threads (default: the library's choice)")
    b.add_argument("--quick", action="store_true", help="the short plan (CI smoke; sweeps of 2-3 points)")
    b.add_argument("--out", default="bench_out", help="folder for bench.json and the PNGs (default ./bench_out)")
    b.add_argument("--no-plots", action="store_true", help="JSON and table only")
    b.add_argument("--no-server", action="store_true", help="skip the server benchmark")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print the figures of two reports side by side with ratios B/A (runs nothing)")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from ..cli import InputError, UsageError, check_output

    if args.compare:
        from ..benchmarks.report import ReportError, compare, load_report

        try:
            a, b = (load_report(p) for p in args.compare)
        except ReportError as e:
            raise InputError(str(e)) from None
        print(compare(a, b, *args.compare))
        return 0

    from ..engine.backend import BackendError, resolve_backend
    from ..engine.config import get_config

    get_config(args.config)                                        # ConfigError: a usage error, before any work
    if args.backend != "all":
        resolve_backend(args.backend)                              # BackendError likewise
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}")
    if args.onnx_dir is not None and not Path(args.onnx_dir, "manifest.json").is_file():
        raise InputError(f"--onnx-dir {args.onnx_dir}: no manifest.json there; expected a folder written by "
                         "`instructavatar export --format onnx`")
    out = Path(args.out)
    check_output(out / "bench.json")

    from ..benchmarks.harness import FULL, QUICK, run_bench
    from ..benchmarks.report import format_report

    try:
        report = run_bench(args.config, args.backend, QUICK if args.quick else FULL, args.threads,
                           progress=not args.quiet and sys.stderr.isatty(), server=not args.no_server,
                           onnx_dir=args.onnx_dir)
    except BackendError as e:
        raise UsageError(str(e)) from None
    path = out / "bench.json"
    path.write_text(json.dumps(report, indent=1))
    print(format_report(report))
    print(f"\nreport: {path}")
    if not args.no_plots:
        from ..benchmarks.plots import write_plots

        try:
            for p in write_plots(report, out):
                print(f"plot: {p}")
        except ImportError:
            print("warning: matplotlib is not installed (pip install 'instructavatar[bench]'): no plots",
                  file=sys.stderr)
    if report["errors"]:
        print(f"error: the bench recorded {len(report['errors'])} error(s) (listed above and in {path})",
              file=sys.stderr)
        return 1
    return 0
