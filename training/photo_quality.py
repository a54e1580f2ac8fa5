"""Photo mode's evaluation, measured with face tools that none of our code trained or uses.

    instructavatar train photo-quality --out runs/photo_quality

The photo mode runs MediaPipe's mesh; everything here is measured with dlib (`dlib-bin` + `face-recognition-
models`, the `photo-eval` extra): its HOG face detector, its 68-point shape predictor and its face-recognition
ResNet embedding (128-d; same person below 0.6). Test photos: engine/photo/samples.py (real photographs read
from installed packages). Speech: held-out sentences of the world (espeak-ng), whose mouth truth is the world's
speech jaw track (avatarworld/speech.py mouth_track).

Measures (68-point indices; every length in units of the face height = brow line to chin, per frame):
  identity      embedding distance, photo vs every output frame (median, max)
  mouth         inner-lip opening (61-63 vs 67-65)            lip sync: Pearson r with the world's jaw truth
  brow          brow height above the eye centres (17-26)     raise your eyebrows (+), frown / talk angrily (-)
  corner        lip corners above the nose-tip line (48, 54)  smile / talk happily (+)
  eyes          eye aperture (37/38 vs 41/40, 43/44 vs 47/46) close your eyes (-)
  yaw, pitch    head pose from solvePnP on six points         look left (+yaw), look right (-yaw),
                                                              nod (pitch std), shake your head (yaw std)
An instruction "shows" on a photo when its clip statistic (mean, or std for nod/shake) moves in the expected
direction from the neutral clip (same photo, audio and seed) by more than THRESHOLD_NOISE x the detector's
noise OF THAT CHANGE: the same statistic measured on STAT_NOISE_CLIPS still clips of the instruction clip's
length (the photo with imperceptible noise, +-2 grey levels, fresh per frame and per clip), its std across those
clips, times sqrt(2) (the change is a difference of two clip statistics). The earlier rule, THRESHOLD_NOISE x
the detector's per-frame std on one still clip, is reported beside it (`shows_per_frame_threshold`): it compares
a change of a ~100-frame statistic with the noise of a single frame.
Stability: frame-to-frame landmark jitter on a silent neutral 10 s clip (idle blinks off) in % of the face
height, beside the detector's jitter on the still clip.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

THRESHOLD_NOISE = 3.0
STAT_NOISE_CLIPS = 8          # still clips whose clip statistics give the noise of a clip statistic
INSTRUCTIONS = (   # (instruction, measure, statistic, expected sign)
    ("Raise your eyebrows.", "brow", "mean", +1),
    ("Smile.", "corner", "mean", +1),
    ("Talk happily.", "corner", "mean", +1),
    ("Frown.", "brow", "mean", -1),
    ("Talk angrily.", "brow", "mean", -1),
    ("Close your eyes.", "eyes", "mean", -1),
    ("Open your mouth wide.", "mouth", "mean", +1),
    ("Nod.", "pitch", "std", +1),
    ("Shake your head.", "yaw", "std", +1),
    ("Look left.", "yaw", "mean", +1),
    ("Look right.", "yaw", "mean", -1),
)
NEUTRAL = "Talk with a neutral expression."
_MODEL_3D = np.array([[0.0, 0.0, 0.0], [0.0, -330.0, -65.0], [-225.0, 170.0, -135.0], [225.0, 170.0, -135.0],
                      [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]])   # nose, chin, eye and mouth corners
_PNP_POINTS = [30, 8, 36, 45, 48, 54]


class DlibFace:
    """dlib's detector, 68-point predictor and face embedding (face-recognition-models' files)."""

    def __init__(self):
        from importlib.util import find_spec

        import dlib

        spec = find_spec("face_recognition_models")   # its __init__ needs pkg_resources: read the files directly
        if spec is None:
            raise ImportError("the evaluation needs face-recognition-models (pip install 'instructavatar[photo]')")
        models = Path(list(spec.submodule_search_locations)[0]) / "models"
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.last_box = None

    def __call__(self, rgb: np.ndarray, embed: bool = True) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(68, 2) landmarks, (128,) embedding or None, whether the detector found the face (else the previous
        box is used)."""
        rgb = np.ascontiguousarray(rgb)
        dets = self.detector(rgb, 0)
        found = len(dets) > 0
        if found:
            box = max(dets, key=lambda r: r.width() * r.height())
            self.last_box = box
        else:
            box = self.last_box
            if box is None:
                raise RuntimeError("dlib finds no face in the first frame")
        shape = self.predictor(rgb, box)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        emb = np.array(self.encoder.compute_face_descriptor(rgb, shape)) if embed else None
        return pts, emb, found


def measures(pts: np.ndarray, size: int) -> dict[str, float]:
    """The per-frame measures of the module docstring from dlib's 68 points."""
    import cv2

    brow_y = pts[17:27, 1].mean()
    face_h = max(pts[8, 1] - brow_y, 1e-6)
    eye_c = np.r_[pts[36:42].mean(0), pts[42:48].mean(0)].reshape(2, 2)
    eye_y = eye_c[:, 1].mean()
    mouth = (pts[[67, 66, 65], 1] - pts[[61, 62, 63], 1]).mean() / face_h
    eyes = ((pts[[41, 40, 47, 46], 1] - pts[[37, 38, 43, 44], 1]).mean()) / face_h
    corner = (pts[33, 1] - pts[[48, 54], 1].mean()) / face_h
    brow = (eye_y - brow_y) / face_h
    f = float(size)
    cam = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    ok, rvec, _ = cv2.solvePnP(_MODEL_3D, pts[_PNP_POINTS], cam, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    R, _ = cv2.Rodrigues(rvec)
    # Euler angles of the head: yaw about the image vertical (+ = nose towards image right), pitch (+ = up)
    yaw = float(np.degrees(np.arcsin(np.clip(R[0, 2], -1, 1))))
    pitch = float((np.degrees(np.arctan2(-R[1, 2], R[2, 2])) % 360.0) - 180.0)   # the model's y is up
    return {"mouth": float(mouth), "eyes": float(eyes), "corner": float(corner), "brow": float(brow),
            "yaw": yaw, "pitch": pitch, "face_h": float(face_h)}


def measure_clip(face: DlibFace, frames: np.ndarray, embed: bool = True) -> dict[str, np.ndarray]:
    rows, embs, pts_all, misses = [], [], [], 0
    for fr in frames:
        pts, emb, found = face(fr, embed)
        misses += not found
        rows.append(measures(pts, fr.shape[1]))
        pts_all.append(pts)
        if embed:
            embs.append(emb)
    out = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    out["points"] = np.stack(pts_all)
    out["misses"] = np.array(misses)
    if embed:
        out["embedding"] = np.stack(embs)
    return out


def jitter(points: np.ndarray, face_h: np.ndarray) -> float:
    """Mean frame-to-frame landmark displacement in % of the face height."""
    d = np.linalg.norm(np.diff(points, axis=0), axis=2).mean(1)
    return float(100 * np.mean(d / face_h[1:]))


def still_clip(photo: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The photo n times with imperceptible noise (+-2 grey levels): the detector's own noise floor."""
    rng = np.random.default_rng(seed)
    return np.stack([np.clip(photo.astype(np.int16) + rng.integers(-2, 3, photo.shape), 0, 255).astype(np.uint8)
                     for _ in range(n)])


def sentence_audio(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio 16 kHz, per-frame jaw truth) of the k-th held-out sentence, held-out voice."""
    from ..avatarworld import speech
    from ..avatarworld.corpus import sentence_ids

    sid = sentence_ids("heldout")[k]
    voice = speech.VOICES[speech.voice_ids("heldout")[k % len(speech.voice_ids("heldout"))]]
    audio = speech.synthesize(speech.SpeechSpec(sid, voice))
    n = len(audio) // 640
    truth = np.asarray(speech.mouth_track(audio, n_frames=n), np.float32)[:, 0]
    return audio[: n * 640].astype(np.float32), truth


def clip_stat(m: dict[str, np.ndarray], key: str, stat: str) -> float:
    return float(np.std(m[key]) if stat == "std" else np.mean(m[key]))


def statistic_noise(clips: list[dict[str, np.ndarray]], measures=INSTRUCTIONS) -> dict[str, float]:
    """The detector's noise on a CHANGE of a clip statistic, per 'measure/stat': the statistic's std across still
    clips (each measured by measure_clip) times sqrt(2), since a change is a difference of two clip statistics."""
    if len(clips) < 2:
        raise ValueError(f"the noise of a clip statistic needs at least 2 still clips, got {len(clips)}")
    out = {}
    for _, key, stat, _ in measures:
        values = [clip_stat(m, key, stat) for m in clips]
        out[f"{key}/{stat}"] = float(np.sqrt(2.0) * np.std(values, ddof=1))
    return out


def evaluate(photos: list[str], size: int, sentences: int, seed: int, threads: int, log=print,
             partial: Path | None = None) -> dict:
    """The measures of the module docstring on each photo; `partial`: a JSON file rewritten after each photo with
    the photos done so far (a long run can be read before it ends)."""
    from ..engine.loader import load_pipeline
    from ..engine.photo.decoder import prepare_photo
    from ..engine.photo.samples import load_sample

    pipe = load_pipeline("demo", threads=threads)
    face = DlibFace()
    speechs = [sentence_audio(k) for k in range(sentences)]
    result = {"photos": {}, "size": size, "seed": seed, "threshold_noise": THRESHOLD_NOISE,
              "stat_noise_clips": STAT_NOISE_CLIPS}
    all_dist, lip_r, lip_pooled = [], [], ([], [])
    for name in photos:
        t0, n_before = time.time(), len(all_dist)
        portrait = prepare_photo(pipe, load_sample(name), size=size)
        photo = portrait.decoder.photo
        face.last_box = None
        _, ref_emb, _ = face(photo)
        still = measure_clip(face, still_clip(photo, 50), embed=False)
        noise = {k: float(np.std(still[k])) for k in ("mouth", "eyes", "corner", "brow", "yaw", "pitch")}
        still_jitter = jitter(still["points"], still["face_h"])
        r = {"noise": noise, "still_jitter_pct": still_jitter, "lip_sync": [], "instructions": {}}

        def run(instruction, audio=None, seconds=None, idle_blinks=True, portrait=portrait, ref_emb=ref_emb):
            frames = pipe.generate(portrait, audio=audio, seconds=seconds, instruction=instruction, seed=seed,
                                   idle_blinks=idle_blinks)
            face.last_box = None
            m = measure_clip(face, frames)
            d = np.linalg.norm(m["embedding"] - ref_emb, axis=1)
            all_dist.extend(d.tolist())
            return frames, m, d

        for k, (audio, truth) in enumerate(speechs):                    # lip sync, neutral talk
            _, m, d = run(NEUTRAL, audio)
            n = min(len(truth), len(m["mouth"]))
            c = float(np.corrcoef(m["mouth"][:n], truth[:n])[0, 1])
            r["lip_sync"].append(c)
            lip_r.append(c)
            lip_pooled[0].extend(m["mouth"][:n] - m["mouth"][:n].mean())
            lip_pooled[1].extend(truth[:n] - truth[:n].mean())
            if k == 0:
                neutral_m = m
        audio0 = speechs[0][0]
        n_clip = len(neutral_m["mouth"])
        stills = [measure_clip(face, still_clip(photo, n_clip, seed=1 + j), embed=False)
                  for j in range(STAT_NOISE_CLIPS)]
        r["statistic_noise"] = statistic_noise(stills)
        r["statistic_noise_clips"] = [STAT_NOISE_CLIPS, n_clip]
        for text, key, stat, sign in INSTRUCTIONS:
            _, m, d = run(text, audio0)
            delta = clip_stat(m, key, stat) - clip_stat(neutral_m, key, stat)
            thr = THRESHOLD_NOISE * r["statistic_noise"][f"{key}/{stat}"]
            thr_frame = THRESHOLD_NOISE * noise[key]
            r["instructions"][text] = {"measure": key, "stat": stat, "delta": delta, "threshold": thr,
                                       "shows": bool(sign * delta > thr), "threshold_per_frame": thr_frame,
                                       "shows_per_frame_threshold": bool(sign * delta > thr_frame),
                                       "max_identity_distance": float(d.max())}
        frames, m, d = run(NEUTRAL, seconds=10.0, idle_blinks=False)    # stability
        r["silent_jitter_pct"] = jitter(m["points"], m["face_h"])
        r["jitter_above_noise_pct"] = r["silent_jitter_pct"] - still_jitter
        r["seconds"] = round(time.time() - t0, 1)
        shows = sum(v["shows"] for v in r["instructions"].values())
        shows_old = sum(v["shows_per_frame_threshold"] for v in r["instructions"].values())
        log(f"{name}: lip sync {np.mean(r['lip_sync']):.3f}, instructions {shows}/{len(INSTRUCTIONS)} "
            f"(per-frame threshold: {shows_old}), identity max {max(all_dist[n_before:]):.3f}, jitter "
            f"{r['silent_jitter_pct']:.3f}% (still {still_jitter:.3f}%), {r['seconds']} s")
        result["photos"][name] = r
        if partial is not None:
            partial.write_text(json.dumps(result, indent=1))
    dist = np.array(all_dist)
    pairs = [v["shows"] for p in result["photos"].values() for v in p["instructions"].values()]
    old_pairs = [v["shows_per_frame_threshold"] for p in result["photos"].values() for v in p["instructions"].values()]
    result["summary"] = {
        "identity_median": float(np.median(dist)), "identity_max": float(dist.max()), "frames": len(dist),
        "lip_sync_mean_r": float(np.mean(lip_r)),
        "lip_sync_pooled_r": float(np.corrcoef(*lip_pooled)[0, 1]),
        "instructions_shown": f"{sum(pairs)}/{len(pairs)}", "instructions_shown_frac": float(np.mean(pairs)),
        "instructions_shown_per_frame_threshold": f"{sum(old_pairs)}/{len(old_pairs)}",
        "jitter_above_noise_pct_max": max(p["jitter_above_noise_pct"] for p in result["photos"].values()),
        "targets": {"identity_median<=0.35": bool(np.median(dist) <= 0.35),
                    "identity_max<=0.5": bool(dist.max() <= 0.5),
                    "lip_sync>=0.8": bool(np.mean(lip_r) >= 0.8), "instructions>=90%": bool(np.mean(pairs) >= 0.9),
                    "jitter<=0.5%": bool(max(p["jitter_above_noise_pct"] for p in result["photos"].values()) <= 0.5)},
    }
    return result


def main(argv: list[str] | None = None) -> int:
    from ..engine.photo.samples import FRONTAL, PHOTOS, available, missing_reason

    ap = argparse.ArgumentParser(prog="instructavatar train photo-quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/photo_quality")
    ap.add_argument("--photos", default=",".join(FRONTAL), help="sample photos (engine/photo/samples.py)")
    ap.add_argument("--size", type=int, default=256, help="photo mode's output crop (px)")
    ap.add_argument("--sentences", type=int, default=3, help="held-out sentences for lip sync")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    photos = [p for p in args.photos.split(",") if p]
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown:
        print(f"error: unknown sample photos: {', '.join(unknown)}; known: {', '.join(PHOTOS)}")
        return 2
    missing = [p for p in photos if p not in available(photos)]
    if missing:
        also = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        print(f"error: {missing_reason(missing[0])}{also}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = evaluate(photos, args.size, args.sentences, args.seed, args.threads,
                   partial=out / "photo_quality.partial.json")
    (out / "photo_quality.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res["summary"], indent=1))
    print(f"wrote {out / 'photo_quality.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
