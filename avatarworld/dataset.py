"""Data sets of generated clips on disk: deterministic, resumable shard writing and lazy reading.

Layout of a data set directory::

    DIR/manifest.json          what was asked for (seed, split, clips, shard size, frame size) and, once
                               complete, counts per kind / emotion / intensity / motion
    DIR/shard_00000/           clips [0, 64), one .npy per field (memory-mapped when read) + meta.json
    DIR/shard_00001/           clips [64, 128) ...

A shard (``SHARD_FIELDS``; T = frames of a clip, S = audio samples, n = clips in the shard, A = 16 AUs,
C = NUM_CONTROLS):

=====================  ==================  ===============================================================
file                   dtype, shape        content
=====================  ==================  ===============================================================
audio.npy              float32 (sum S,)    16 kHz mono audio of all clips, concatenated
audio_offsets.npy      int64 (n+1,)        clip k's audio is audio[off[k]:off[k+1]]
controls.npy           float32 (sum T, C)  per-frame controls (controls.CONTROL_NAMES)
frame_offsets.npy      int64 (n+1,)        clip k's frames are rows off[k]:off[k+1]
pose.npy               float32 (sum T, 3)  yaw, pitch, roll (degrees; a copy of controls' columns)
au_frames.npy          bool (sum T, A)     per-frame AU activity (controls.AU_IDS order)
au_clip.npy            bool (n, A)         clip-level AU activity (active in >= 3 frames)
target_aus.npy         bool (n, A)         AUs the instruction asks for
keyframe.npy           float32 (n, C)      keyframe controls (same identity, another emotion)
identity.npy           int32 (n,)          identity index
emotion.npy            int8 (n,)           index in behaviour.EMOTIONS (motion clips: neutral)
intensity.npy          int8 (n,)           1..3; 0 for motion-only clips
keyframe_emotion.npy   int8 (n,)           index in behaviour.EMOTIONS
kind.npy               int8 (n,)           index in clips.KINDS
frames.npz             uint8, deflated     only with store_frames: member "00000".."000nn" = clip k's
                                           rendered frames (T, H, W, 3), member "keyframes" (n, H, W, 3);
                                           one member per clip, so a clip decompresses on its own
landmarks.npy          float32 (sum T,K,2) only with store_frames: renderer landmarks (pixels at H)
keyframe_landmarks.npy float32 (n, K, 2)   only with store_frames
meta.json                                  first clip index, count, the ClipSpecs (JSON), instruction
                                           texts (JSON list), kinds (JSON list)
=====================  ==================  ===============================================================

A shard is written into a temporary directory and renamed into place (atomic on one file system), so an
interrupted run leaves only complete shards and stale ``.tmp-*`` directories, which the next run removes;
it then skips the complete shards. Clip i's spec depends only on (seed, i, split)
(clips.spec_for_index), so the data set is the same however the run is chunked or resumed.

Frames are not stored by default (generation then runs at ~100 clips/s and a shard needs ~0.3 MB per clip,
mostly audio); ``store_frames`` adds the rendered frames, deflated (~2 kB per 128 px frame, the world's flat
shading compresses ~20x), which load ~40x faster than re-rendering them. Figures and the choice:
benchmarks/RESULTS.md, "Synthetic world: data generation" (``instructavatar-data bench``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import behaviour, clips
from .clips import Clip, ClipSpec, make_clip, spec_for_index
from .controls import AU_IDS, CONTROL_NAMES, ROTATION_SLICE

FORMAT = "instructavatar-avatarworld-clips"
WORLD_VERSION = 1  # bump when behaviour / clips / speech change what a (seed, index) generates
SHARD_SIZE = 64
MANIFEST = "manifest.json"

_CONFIG_KEYS = ("format", "world_version", "seed", "split", "shard_size", "size", "store_frames")


def shard_name(k: int) -> str:
    return f"shard_{k:05d}"


@dataclass(frozen=True)
class GenerateConfig:
    out: str
    clips: int
    seed: int = 0
    split: str = "train"
    size: int = 128
    store_frames: bool = False
    shard_size: int = SHARD_SIZE
    speech_cache: str | None = None

    def manifest_header(self) -> dict:
        return {"format": FORMAT, "world_version": WORLD_VERSION, "seed": self.seed, "split": self.split,
                "shard_size": self.shard_size, "size": self.size, "store_frames": self.store_frames}

    def shard_ranges(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.shard_size, self.clips)) for s in range(0, self.clips, self.shard_size)]


# --------------------------------------------------------------------------------------------------
# writing


def _renderer(size: int):
    from .render import FaceRenderer

    return FaceRenderer(size)


def render_clip_frames(clip: Clip, renderer) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (T, K, 2) float32 landmarks of a clip."""
    from .identity import identity

    ident = identity(clip.identity)
    pairs = [renderer.render_with_landmarks(ident, c) for c in clip.controls]
    return (np.stack([np.asarray(f, np.uint8) for f, _ in pairs]),
            np.stack([np.asarray(p, np.float32) for _, p in pairs]))


def pack_shard(clip_list: list[Clip], first: int, frames: list[np.ndarray] | None = None,
               keyframes: list[np.ndarray] | None = None, landmarks: list[np.ndarray] | None = None,
               keyframe_landmarks: list[np.ndarray] | None = None) -> tuple[dict, dict]:
    """Arrays and meta of a shard of clips (the format in the module docstring)."""
    n_frames = np.array([c.n_frames for c in clip_list])
    n_audio = np.array([len(c.audio) for c in clip_list])
    arrays = {
        "audio": np.concatenate([c.audio for c in clip_list]).astype(np.float32),
        "audio_offsets": np.concatenate([[0], np.cumsum(n_audio)]).astype(np.int64),
        "controls": np.concatenate([c.controls for c in clip_list]).astype(np.float32),
        "frame_offsets": np.concatenate([[0], np.cumsum(n_frames)]).astype(np.int64),
        "au_frames": np.concatenate([c.au_frames for c in clip_list]).astype(bool),
        "au_clip": np.stack([c.au_clip for c in clip_list]).astype(bool),
        "target_aus": np.stack([c.target_aus for c in clip_list]).astype(bool),
        "keyframe": np.stack([c.keyframe for c in clip_list]).astype(np.float32),
        "identity": np.array([c.identity for c in clip_list], np.int32),
        "emotion": np.array([c.emotion for c in clip_list], np.int8),
        "intensity": np.array([c.intensity for c in clip_list], np.int8),
        "keyframe_emotion": np.array([c.keyframe_emotion for c in clip_list], np.int8),
        "kind": np.array([clips.KINDS.index(c.kind) for c in clip_list], np.int8),
    }
    arrays["pose"] = arrays["controls"][:, ROTATION_SLICE].copy()
    if frames is not None:
        arrays["frames"] = {f"{k:05d}": np.asarray(f, np.uint8) for k, f in enumerate(frames)}
        arrays["frames"]["keyframes"] = np.stack(keyframes).astype(np.uint8)
        arrays["landmarks"] = np.concatenate(landmarks).astype(np.float32)
        arrays["keyframe_landmarks"] = np.stack(keyframe_landmarks).astype(np.float32)
    meta = {"format": FORMAT, "world_version": WORLD_VERSION, "first": first, "count": len(clip_list),
            "specs": [json.loads(c.spec.to_json()) for c in clip_list],
            "instructions": [c.instruction for c in clip_list], "kinds": [c.kind for c in clip_list]}
    return arrays, meta


def write_shard(directory: Path, name: str, arrays: dict, meta: dict) -> Path:
    """Write a shard into ``directory/.tmp-NAME-PID`` and rename it to ``directory/NAME`` (atomic)."""
    final = directory / name
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for key, value in arrays.items():
        if isinstance(value, dict):  # frames: one deflated member per clip
            np.savez_compressed(tmp / f"{key}.npz", **value)
        else:
            np.save(tmp / f"{key}.npy", value, allow_pickle=False)
    (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    if final.exists():  # an incomplete or stale shard of another run: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def shard_complete(directory: Path, name: str, first: int, count: int) -> bool:
    meta_path = directory / name / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("first") == first and meta.get("count") == count
            and meta.get("world_version") == WORLD_VERSION)


def generate_shard(cfg: GenerateConfig, k: int, first: int, stop: int, renderer=None, on_clip=None) -> Path:
    """Generate clips [first, stop) and write them as shard ``k`` of ``cfg.out``."""
    clip_list = []
    stored: tuple[list, list, list, list] | None = None
    if cfg.store_frames:
        from .identity import identity

        renderer = renderer or _renderer(cfg.size)
        stored = ([], [], [], [])  # frames, keyframes, landmarks, keyframe landmarks
    for i in range(first, stop):
        clip = make_clip(spec_for_index(cfg.seed, i, cfg.split), cache_dir=cfg.speech_cache)
        clip_list.append(clip)
        if stored is not None:
            frames, points = render_clip_frames(clip, renderer)
            kf, kf_points = renderer.render_with_landmarks(identity(clip.identity), clip.keyframe)
            for lst, x in zip(stored, (frames, kf, points, kf_points)):
                lst.append(x)
        if on_clip is not None:
            on_clip()
    if stored is not None:
        arrays, meta = pack_shard(clip_list, first, stored[0], stored[1], stored[2], stored[3])
    else:
        arrays, meta = pack_shard(clip_list, first)
    return write_shard(Path(cfg.out), shard_name(k), arrays, meta)


def _generate_shard_job(args: tuple[GenerateConfig, int, int, int]) -> int:
    cfg, k, first, stop = args
    generate_shard(cfg, k, first, stop)
    return stop - first


def _summary(out: Path, shards: list[str]) -> dict:
    kinds: Counter = Counter()
    emotions: Counter = Counter()
    intensities: Counter = Counter()
    motions: Counter = Counter()
    frames = 0
    for name in shards:
        meta = json.loads((out / name / "meta.json").read_text())
        for d in meta["specs"]:
            kinds[d["kind"]] += 1
            if d["kind"] == "talk":
                emotions[d["emotion"]] += 1
                intensities[str(d["intensity"])] += 1
            motions.update(d["motions"])
        frames += int(np.load(out / name / "frame_offsets.npy")[-1])
    return {"kinds": dict(sorted(kinds.items())), "talk_emotions": dict(sorted(emotions.items())),
            "talk_intensities": dict(sorted(intensities.items())), "motions": dict(sorted(motions.items())),
            "frames": frames, "hours": round(frames / behaviour.FPS / 3600, 4)}


def generate(cfg: GenerateConfig, progress: bool = True, workers: int = 1, limit_shards: int | None = None
             ) -> dict:
    """Generate (or resume) the data set ``cfg`` describes; returns the manifest. ``limit_shards`` stops
    after writing that many new shards (for tests of resumption)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    header = cfg.manifest_header()
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        diff = {k: (old.get(k), header[k]) for k in _CONFIG_KEYS if old.get(k) != header[k]}
        if diff:
            raise ValueError(f"{out} holds a data set generated with other settings {diff}; "
                             "use another --out")
    for stale in out.glob(".tmp-shard_*"):
        shutil.rmtree(stale, ignore_errors=True)
    ranges = cfg.shard_ranges()
    manifest = dict(header, clips=cfg.clips, num_shards=len(ranges), complete=False,
                    emotions=list(behaviour.EMOTIONS), kinds=list(clips.KINDS), au_ids=list(AU_IDS),
                    control_names=list(CONTROL_NAMES), fps=clips.FPS, sample_rate=clips.SAMPLE_RATE,
                    shards=[shard_name(k) for k in range(len(ranges))])
    _write_json(manifest_path, manifest)
    complete = [shard_complete(out, shard_name(k), a, b - a) for k, (a, b) in enumerate(ranges)]
    todo = [(k, a, b) for k, (a, b) in enumerate(ranges) if not complete[k]][:limit_shards]
    done_clips = sum(b - a for k, (a, b) in enumerate(ranges) if complete[k])
    bar = _progress(cfg.clips, done_clips, progress)
    try:
        if workers > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for n in pool.map(_generate_shard_job, [(cfg, k, a, b) for k, a, b in todo]):
                    bar.update(n)
        else:
            renderer = _renderer(cfg.size) if cfg.store_frames else None
            for k, a, b in todo:
                generate_shard(cfg, k, a, b, renderer=renderer, on_clip=lambda: bar.update(1))
    finally:
        bar.close()
    if all(shard_complete(out, shard_name(k), a, b - a) for k, (a, b) in enumerate(ranges)):
        manifest.update(complete=True, **_summary(out, manifest["shards"]))
        _write_json(manifest_path, manifest)
    return manifest


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="clip", desc="generate", dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------
# reading


class _Shard:
    def __init__(self, path: Path):
        self.path = path
        self.meta = json.loads((path / "meta.json").read_text())
        self._arrays: dict[str, np.ndarray] = {}
        self._npz = None

    def __getattr__(self, key: str) -> np.ndarray:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._arrays:
            file = self.path / f"{key}.npy"
            if not file.exists():
                raise AttributeError(f"shard {self.path} has no {key}.npy")
            self._arrays[key] = np.load(file, mmap_mode="r", allow_pickle=False)
        return self._arrays[key]

    def has(self, key: str) -> bool:
        return (self.path / f"{key}.npy").exists()

    def has_frames(self) -> bool:
        return (self.path / "frames.npz").exists()

    def frames(self, j: int) -> np.ndarray:
        """Stored frames (T, H, W, 3) uint8 of the shard's clip ``j``."""
        if self._npz is None:
            self._npz = np.load(self.path / "frames.npz", allow_pickle=False)
        return self._npz[f"{j:05d}"]

    def keyframe_frame(self, j: int) -> np.ndarray:
        if self._npz is None:
            self._npz = np.load(self.path / "frames.npz", allow_pickle=False)
        return self._npz["keyframes"][j]


class ClipDataset:
    """Lazy read access to a generated data set: ``len(ds)``, ``ds[i] -> Clip`` (arrays are read from
    memory-mapped shards on access). Frames are in ``clip.frames`` when the data set stored them; otherwise
    render them with :func:`iter_frames` / :func:`render_frames`."""

    def __init__(self, directory: str | os.PathLike, load_frames: bool = True):
        self.dir = Path(directory)
        self.manifest = json.loads((self.dir / MANIFEST).read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.dir} is not a {FORMAT} data set")
        self.load_frames = load_frames
        self._shards: list[_Shard] = []
        starts = []
        for name in self.manifest["shards"]:
            if (self.dir / name / "meta.json").is_file():
                shard = _Shard(self.dir / name)
                self._shards.append(shard)
                starts.append(shard.meta["first"])
        self._starts = np.array(starts, np.int64)
        self._counts = np.array([s.meta["count"] for s in self._shards], np.int64)
        # clip indices present (all of 0..clips-1 once complete)
        self._index = np.concatenate([np.arange(s, s + c) for s, c in zip(self._starts, self._counts)]) \
            if self._shards else np.zeros(0, np.int64)

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def __len__(self) -> int:
        return int(len(self._index))

    def _locate(self, i: int) -> tuple[_Shard, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        clip_index = int(self._index[i])
        k = int(np.searchsorted(self._starts, clip_index, side="right") - 1)
        return self._shards[k], clip_index - int(self._starts[k])

    def spec(self, i: int) -> ClipSpec:
        shard, j = self._locate(i)
        return ClipSpec.from_json(shard.meta["specs"][j])

    def n_frames(self, i: int) -> int:
        shard, j = self._locate(i)
        off = shard.frame_offsets
        return int(off[j + 1] - off[j])

    def __getitem__(self, i: int) -> Clip:
        shard, j = self._locate(i)
        f0, f1 = (int(x) for x in shard.frame_offsets[j:j + 2])
        a0, a1 = (int(x) for x in shard.audio_offsets[j:j + 2])
        frames = landmarks = None
        if self.load_frames and shard.has_frames():
            frames, landmarks = shard.frames(j), np.array(shard.landmarks[f0:f1])
        return Clip(spec=ClipSpec.from_json(shard.meta["specs"][j]), audio=np.array(shard.audio[a0:a1]),
                    controls=np.array(shard.controls[f0:f1]), au_frames=np.array(shard.au_frames[f0:f1]),
                    au_clip=np.array(shard.au_clip[j]), target_aus=np.array(shard.target_aus[j]),
                    keyframe=np.array(shard.keyframe[j]), frames=frames, landmarks=landmarks)

    def keyframe_frame(self, i: int) -> np.ndarray | None:
        """The stored rendered keyframe (H, W, 3) uint8 of clip ``i``, None without stored frames."""
        shard, j = self._locate(i)
        return shard.keyframe_frame(j) if shard.has_frames() else None

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self)):
            yield self[i]


def iter_frames(clip: Clip, renderer=None, size: int = 128, landmarks: bool = True
                ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield (frame (H, W, 3) uint8, landmark image (H, W, 3) uint8 or None) for every frame of a clip.
    Stored frames and landmarks are used when the clip has them; otherwise the renderer draws them."""
    from .identity import identity
    from .render import landmark_image

    renderer = renderer or _renderer(size)
    ident = identity(clip.identity)
    src = renderer.size
    for t in range(clip.n_frames):
        c = clip.controls[t]
        if clip.frames is not None:
            frame = clip.frames[t]
            lm = None
            if landmarks:
                points = clip.landmarks[t] if clip.landmarks is not None else renderer.landmarks(ident, c)
                lm = landmark_image(points, clip.frames.shape[1], clip.frames.shape[1])
        elif landmarks:
            frame, points = renderer.render_with_landmarks(ident, c)
            lm = landmark_image(points, src, src)
        else:
            frame, lm = renderer.render(ident, c), None
        yield np.asarray(frame, np.uint8), lm


def render_frames(clip: Clip, renderer=None, size: int = 128, landmarks: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """All frames (T, H, W, 3) and landmark images (T, H, W, 3) (None without ``landmarks``) of a clip."""
    pairs = list(iter_frames(clip, renderer, size, landmarks))
    frames = np.stack([p[0] for p in pairs])
    return frames, (np.stack([p[1] for p in pairs]) if landmarks else None)


# --------------------------------------------------------------------------------------------------
# throughput: generation, rendering vs loading frames


def benchmark(work_dir: str | os.PathLike, clips_n: int = 32, size: int = 128, seed: int = 0,
              speech_cache: str | None = None) -> dict:
    """Measure generation (clips/s with and without stored frames), re-rendering (frames/s, with and
    without landmark images) and loading stored frames (frames/s, memory-mapped .npy and compressed .npz)
    on this machine, single process. Writes scratch data sets under ``work_dir``."""
    import tempfile
    import time

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cache = speech_cache or tempfile.mkdtemp(prefix="speech-", dir=work)
    res: dict = {"clips": clips_n, "size": size}

    t = time.perf_counter()
    generate(GenerateConfig(out=str(work / "plain"), clips=clips_n, seed=seed, size=size, speech_cache=cache,
                            shard_size=clips_n), progress=False)
    res["gen_cold_s"] = time.perf_counter() - t  # includes espeak-ng (empty speech cache)
    shutil.rmtree(work / "plain")
    t = time.perf_counter()
    manifest = generate(GenerateConfig(out=str(work / "plain"), clips=clips_n, seed=seed, size=size,
                                       speech_cache=cache, shard_size=clips_n), progress=False)
    res["gen_warm_s"] = time.perf_counter() - t  # speech cached
    frames = int(manifest["frames"])
    res["frames"] = frames
    t = time.perf_counter()
    generate(GenerateConfig(out=str(work / "frames"), clips=clips_n, seed=seed, size=size, speech_cache=cache,
                            store_frames=True, shard_size=clips_n), progress=False)
    res["gen_frames_s"] = time.perf_counter() - t
    res["bytes_plain"] = sum(f.stat().st_size for f in (work / "plain").rglob("*") if f.is_file())
    res["bytes_frames"] = sum(f.stat().st_size for f in (work / "frames").rglob("*") if f.is_file())

    ds = ClipDataset(work / "plain")
    renderer = _renderer(size)
    from .identity import identity
    from .render import landmark_image

    t = time.perf_counter()
    for i in range(len(ds)):
        clip = ds[i]
        ident = identity(clip.identity)
        for c in clip.controls:
            renderer.render(ident, c)
    res["render_fps"] = frames / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(len(ds)):
        clip = ds[i]
        ident = identity(clip.identity)
        for c in clip.controls:
            _, pts = renderer.render_with_landmarks(ident, c)
            landmark_image(pts, size, size)
    res["render_lm_fps"] = frames / (time.perf_counter() - t)

    # loading stored (deflated) frames, clips in random order
    stored = ClipDataset(work / "frames")
    order = np.random.default_rng(0).permutation(len(stored))
    t = time.perf_counter()
    n = 0
    for i in order:
        n += stored[int(i)].frames.shape[0]
    res["load_npz_fps"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = 0
    for i in order:
        for _frame, _lm in iter_frames(stored[int(i)], renderer, size):
            n += 1
    res["load_npz_lm_fps"] = n / (time.perf_counter() - t)  # + landmark images from stored landmarks
    res["bytes_npz_frames"] = sum(f.stat().st_size for f in (work / "frames").rglob("frames.npz"))
    # the uncompressed alternative: one .npy of all frames, memory-mapped, random single frames
    flat = work / "frames_flat.npy"
    np.save(flat, np.concatenate([stored[i].frames for i in range(len(stored))]))
    mm = np.load(flat, mmap_mode="r")
    idx = np.random.default_rng(1).integers(0, len(mm), 2000)
    t = time.perf_counter()
    for k in idx:
        np.array(mm[int(k)])
    res["load_npy_random_frame_fps"] = len(idx) / (time.perf_counter() - t)
    # landmark images alone (what a motion encoder needs, if frames come from disk)
    clip = ds[0]
    ident = identity(clip.identity)
    t = time.perf_counter()
    for c in clip.controls:
        landmark_image(renderer.landmarks(ident, c), size, size)
    res["landmark_image_fps"] = clip.n_frames / (time.perf_counter() - t)
    res["bytes_per_frame_npy"] = size * size * 3
    res["bytes_per_frame_npz"] = res["bytes_npz_frames"] / frames
    res["bytes_per_clip_plain"] = res["bytes_plain"] / clips_n
    res["bytes_per_clip_frames"] = res["bytes_frames"] / clips_n
    return res
