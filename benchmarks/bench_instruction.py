"""What reading an instruction costs (issue 28, engine/instruction_reader.py): `Pipeline.encode_instruction` with
the demo's reader and without it (`pipeline.reader = None`), interleaved call by call on the same pipeline, for
an instruction of the world's own (the reader embeds only its clauses, then leaves it), an idiom and an
exclamation (the reader embeds every span too, then the restated text). Once per instruction: at session start,
`set_instruction` and `schedule_instruction`, never per frame.

    python -m instructavatar.benchmarks.bench_instruction [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TEXTS = ("Talk very sadly, and nod.", "Look angry, and really lay it on thick.", "I want to see you furious!!")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args(argv)
    from ..engine.loader import load_pipeline

    pipe = load_pipeline("demo", threads=args.threads, backend=args.backend, announce=lambda m: None)
    if pipe.reader is None:
        raise SystemExit("this pipeline has no instruction reader (the demo config ships one)")
    reader = pipe.reader
    key = pipe.prepare(np.full((128, 128, 3), 200, np.uint8)).keyframe
    print(f"backend {getattr(pipe.backend, 'name', '?')}, {args.threads} thread(s), {args.repeats} interleaved "
          "pairs; ms per encode_instruction call, min / median\n")
    print("| instruction | with the reader | as typed | difference (median) | restated |\n|---|---:|---:|---:|---|")
    for text in TEXTS:
        times = {True: [], False: []}
        for _ in range(2):                                    # warm-up
            for on in (True, False):
                pipe.reader = reader if on else None
                pipe.encode_instruction(text, key)
        for _ in range(args.repeats):
            for on in (True, False):
                pipe.reader = reader if on else None
                t0 = time.perf_counter()
                pipe.encode_instruction(text, key)
                times[on].append(1000 * (time.perf_counter() - t0))
        pipe.reader = reader
        r = pipe.read_instruction(text)
        w, a = np.array(times[True]), np.array(times[False])
        print(f"| {text!r} | {w.min():.1f} / {np.median(w):.1f} | {a.min():.1f} / {np.median(a):.1f} | "
              f"+{np.median(w) - np.median(a):.1f} | {r.restated if r else '(as typed)'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
