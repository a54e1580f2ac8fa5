"""Stills of photo mode for docs/images/photo_mode.png: each sample photo (engine/photo/samples.py) at rest and
at the peak of several instructions (one frame per clip, chosen by the largest change from the photo), plus a
close-up of the mouth and the mesh border, to show there is no tearing.

    python scripts/photo_stills.py --out docs/images/photo_mode.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

SHOTS = (("rest", None), ("speech", "Talk with a neutral expression."), ("smile", "Smile."),
         ("open wide", "Open your mouth wide."), ("eyes closed", "Close your eyes."),
         ("brows up", "Raise your eyebrows."), ("angry", "Talk angrily."), ("look left", "Look left."))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/images/photo_mode.png")
    ap.add_argument("--size", type=int, default=192)
    args = ap.parse_args(argv)
    from instructavatar.engine.loader import load_pipeline
    from instructavatar.engine.photo.decoder import prepare_photo
    from instructavatar.engine.photo.samples import available, load_sample
    from instructavatar.training.photo_quality import sentence_audio

    pipe = load_pipeline("demo", threads=1)
    audio, _ = sentence_audio(0)
    rows = []
    for name in available():
        p = prepare_photo(pipe, load_sample(name), size=args.size)
        row = []
        for _label, inst in SHOTS:
            if inst is None:
                row.append(p.decoder.photo)
                continue
            frames = pipe.generate(p, audio=audio, instruction=inst, seed=0)
            change = np.abs(frames.astype(np.int16) - p.decoder.photo).mean(axis=(1, 2, 3))
            row.append(frames[int(np.argmax(change))])
        rows.append(np.concatenate(row, 1))
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).save(args.out, optimize=True)
    print(f"wrote {args.out} {grid.shape}; columns: {', '.join(s for s, _ in SHOTS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
