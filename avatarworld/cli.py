"""``instructavatar-data``: generate synthetic-world data sets, contact sheets and clip previews.

    instructavatar-data generate --out data/train --clips 20000 --seed 0 [--split train] [--size 128]
                                 [--store-frames] [--workers 1] [--speech-cache DIR]
    instructavatar-data sheet --kind identities --out docs/images/identities_x_emotions.png
    instructavatar-data sheet --kind motions --out docs/images/motion_instructions.png
    instructavatar-data show-clip --seed 0 --index 3 [--split heldout] --out clip.png   (or --data DIR)
    instructavatar-data info DIR
    instructavatar-data bench [--clips 32] [--size 128]     (throughput table for RESULTS.md)

``generate`` is deterministic in ``--seed`` and resumable: rerun the same command after an interruption
and it skips the shards already written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _generate(args: argparse.Namespace) -> int:
    from .dataset import GenerateConfig, generate

    cfg = GenerateConfig(out=args.out, clips=args.clips, seed=args.seed, split=args.split, size=args.size,
                         store_frames=args.store_frames, shard_size=args.shard_size,
                         speech_cache=args.speech_cache)
    manifest = generate(cfg, progress=not args.quiet, workers=args.workers)
    summary = {k: manifest.get(k) for k in ("clips", "num_shards", "complete", "kinds", "frames", "hours")}
    print(json.dumps(summary))
    return 0


def _sheet(args: argparse.Namespace) -> int:
    from . import sheets

    if args.kind == "identities":
        path = sheets.identities_sheet(args.out, n_identities=args.rows, intensity=args.intensity,
                                       size=args.size)
    elif args.kind == "motions":
        path = sheets.motions_sheet(args.out, size=args.size)
    else:
        path = sheets.intensities_sheet(args.out, size=args.size)
    print(path)
    return 0


def _show_clip(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from .clips import make_clip, spec_for_index
    from .dataset import ClipDataset, render_frames

    if args.data:
        clip = ClipDataset(args.data)[args.index]
    else:
        clip = make_clip(spec_for_index(args.seed, args.index, args.split), cache_dir=args.speech_cache)
    frames, lms = render_frames(clip, size=args.size)
    step = max(1, clip.n_frames // args.columns)
    picks = list(range(0, clip.n_frames, step))[:args.columns]
    strip = np.concatenate([np.concatenate([frames[t], lms[t]], 0) for t in picks], 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(out)
    if args.audio:
        import soundfile as sf

        sf.write(args.audio, clip.audio, 16000, subtype="PCM_16")
    print(json.dumps({"spec": json.loads(clip.spec.to_json()), "frames": clip.n_frames, "picked": picks,
                      "out": str(out)}))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import tempfile

    from .dataset import benchmark

    work = args.work or tempfile.mkdtemp(prefix="ia-databench-")
    r = benchmark(work, clips_n=args.clips, size=args.size, seed=args.seed)
    rows = [
        ("generate, speech not cached (espeak-ng)", f"{r['clips'] / r['gen_cold_s']:.1f} clips/s",
         f"{r['frames'] / r['gen_cold_s']:.0f} frames/s"),
        ("generate, speech cached", f"{r['clips'] / r['gen_warm_s']:.1f} clips/s",
         f"{r['frames'] / r['gen_warm_s']:.0f} frames/s"),
        ("generate with --store-frames", f"{r['clips'] / r['gen_frames_s']:.2f} clips/s",
         f"{r['frames'] / r['gen_frames_s']:.0f} frames/s"),
        (f"re-render {r['size']}px frame", f"{1e3 / r['render_fps']:.2f} ms/frame",
         f"{r['render_fps']:.0f} frames/s"),
        (f"re-render {r['size']}px frame + landmark image", f"{1e3 / r['render_lm_fps']:.2f} ms/frame",
         f"{r['render_lm_fps']:.0f} frames/s"),
        ("landmark image only (landmarks + dots)", f"{1e3 / r['landmark_image_fps']:.2f} ms/frame",
         f"{r['landmark_image_fps']:.0f} frames/s"),
        ("load stored frames (deflated .npz, whole clips)", f"{1e3 / r['load_npz_fps']:.4f} ms/frame",
         f"{r['load_npz_fps']:.0f} frames/s"),
        ("load stored frames + landmark images (from stored landmarks)",
         f"{1e3 / r['load_npz_lm_fps']:.4f} ms/frame", f"{r['load_npz_lm_fps']:.0f} frames/s"),
        ("load frames from an uncompressed .npy memory map (random frames)",
         f"{1e3 / r['load_npy_random_frame_fps']:.4f} ms/frame",
         f"{r['load_npy_random_frame_fps']:.0f} frames/s"),
        ("disk: clip without / with stored frames", f"{r['bytes_per_clip_plain'] / 1e3:.0f} kB / "
         f"{r['bytes_per_clip_frames'] / 1e3:.0f} kB per clip", ""),
        ("disk: stored frame .npy / .npz", f"{r['bytes_per_frame_npy'] / 1e3:.1f} kB / "
         f"{r['bytes_per_frame_npz'] / 1e3:.1f} kB per frame", ""),
    ]
    print(f"| {r['clips']} clips, {r['frames']} frames, {r['size']}px, 1 process | time | rate |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


def _info(args: argparse.Namespace) -> int:
    manifest = json.loads((Path(args.dir) / "manifest.json").read_text())
    manifest.pop("control_names", None)
    print(json.dumps(manifest, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructavatar-data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate (or resume) a data set of clips")
    g.add_argument("--out", required=True, help="data set directory")
    g.add_argument("--clips", type=int, required=True, help="number of clips")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", choices=("train", "heldout"), default="train")
    g.add_argument("--size", type=int, default=128, help="frame size (stored frames / rendering)")
    g.add_argument("--store-frames", action="store_true", help="also store rendered uint8 frames (large)")
    g.add_argument("--shard-size", type=int, default=64, help="clips per shard")
    g.add_argument("--workers", type=int, default=1, help="processes (one shard each)")
    g.add_argument("--speech-cache", default=None, help="espeak-ng audio cache (default ~/.cache/...)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    s = sub.add_parser("sheet", help="write a contact sheet PNG")
    s.add_argument("--kind", choices=("identities", "motions", "intensities"), required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--size", type=int, default=None, help="cell size in pixels")
    s.add_argument("--rows", type=int, default=6, help="identities (identities sheet)")
    s.add_argument("--intensity", type=int, default=3, choices=(1, 2, 3))
    s.set_defaults(func=_sheet)

    c = sub.add_parser("show-clip", help="render a clip as a strip of frames over landmark images")
    c.add_argument("--data", default=None, help="read clip --index from this data set instead")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--index", type=int, default=0)
    c.add_argument("--split", choices=("train", "heldout"), default="train")
    c.add_argument("--size", type=int, default=128)
    c.add_argument("--columns", type=int, default=8)
    c.add_argument("--out", required=True, help="PNG path")
    c.add_argument("--audio", default=None, help="also write the clip's audio (WAV)")
    c.add_argument("--speech-cache", default=None)
    c.set_defaults(func=_show_clip)

    b = sub.add_parser("bench", help="measure generation, rendering and frame loading throughput")
    b.add_argument("--clips", type=int, default=32)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    b.add_argument("--json", default=None, help="also write the raw figures here")
    b.set_defaults(func=_bench)

    i = sub.add_parser("info", help="print a data set's manifest")
    i.add_argument("dir")
    i.set_defaults(func=_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "size", 0) is None:
        args.size = 128 if args.kind == "identities" else 112
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
