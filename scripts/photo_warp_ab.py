"""A/B: photo mode's warp per frame, a previous engine/photo/warp.py against the current one, same photo and
vertices (the astronaut under "Open your mouth wide.", 50 frames), CPU time, one thread, passes interleaved.

    git show a8950bf~1:engine/photo/warp.py > /tmp/old_warp.py     # the interior before the fourth round
    python scripts/photo_warp_ab.py /tmp/old_warp.py
"""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    import cv2

    from instructavatar.engine.loader import load_pipeline
    from instructavatar.engine.photo import warp as current
    from instructavatar.engine.photo.decoder import prepare_photo
    from instructavatar.engine.photo.rig import MESH_LIP_IN_LOWER, MESH_LIP_IN_UPPER
    from instructavatar.engine.photo.samples import load_sample
    from instructavatar.training.photo_quality import sentence_audio

    if len(argv) != 1:
        print(__doc__)
        return 2
    spec = importlib.util.spec_from_file_location("previous_warp", argv[0])
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    cv2.setNumThreads(1)
    pipe = load_pipeline("demo", threads=1, announce=lambda m: None)
    audio, _ = sentence_audio(0)
    chains = (np.array(MESH_LIP_IN_UPPER), np.array(MESH_LIP_IN_LOWER))
    for size in (256, 512):
        portrait = prepare_photo(pipe, load_sample("astronaut"), size=size)
        d = portrait.decoder
        session, _ = pipe.new_session(portrait, "Open your mouth wide.", seed=0, keep_motion=True)
        session.push_audio(audio[:32000])
        session.flush()
        verts, _ = d.geometry(np.concatenate(session.motion_log)[:50])
        warps = {name: m.FlowWarp(d.photo, d.rig.rest[:, :2], d.rig.triangles, ~d.rig.mouth, chains, d.rig.scale)
                 for name, m in (("previous", previous), ("current", current))}
        times = {name: [] for name in warps}
        for _ in range(5):
            for name, w in warps.items():
                t0 = time.process_time()
                for v in verts:
                    w(v)
                times[name].append((time.process_time() - t0) / len(verts) * 1e3)
        print(f"{size} px: " + ", ".join(f"{k} {np.median(v):.2f}" for k, v in times.items())
              + " CPU ms per frame (median of 5 passes over 50 frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
