"""Data for the motion generator: clips of the synthetic world turned into training arrays.

    instructavatar train prepare --out data/motion --clips 1500 --seed 0     # needs no VAE
    instructavatar train latents --data data/motion --vae runs/vae             # once the motion encoder is fixed

`prepare` generates clips (avatarworld.dataset), draws each frame's landmark-dot image (what an image motion
encoder reads; a VAE that reads `landmark_points` needs none), and embeds several instruction phrasings per clip
with the frozen text encoder. `latents` runs the VAE's motion encoder over every frame's landmarks: the stored
dot images, or the coordinates recomputed from the clips' controls. Everything is stored as flat .npy
arrays with offsets, loaded with memory mapping. Both steps are resumable per shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..avatarworld import instructions
from ..avatarworld.dataset import ClipDataset, GenerateConfig, generate
from ..avatarworld.identity import identity
from ..avatarworld.render import FaceRenderer, landmark_image
from ..engine.config import get_config
from ..engine.modules.text_encoder import build_text_encoder
from ..engine.pipeline import DEFAULT_INSTRUCTION
from ..engine.tokenizer import build_tokenizer
from .common import init_weights, load_vae_weights
from .vae_data import motion_input

TEXTS_PER_CLIP = 3          # the clip's own instruction + 2 more phrasings of the same content
TEXT_TOKENS = 40            # stored token embeddings per text (instructions are shorter; checked)


def free_texts(clip, rng: np.random.Generator, n: int, fits=lambda text: True, tries: int = 50) -> list[str]:
    """n train-split phrasings of the clip's content as people type them (avatarworld/phrasings.py: graded words,
    idioms, exclamation, comparison, hedging, described motions); the default instruction for neutral talk.
    Each is drawn again until `fits(text)` (the stored token length)."""
    from ..avatarworld import phrasings

    spec = clip.spec
    if spec.kind == "talk_neutral":
        return [DEFAULT_INSTRUCTION] * n
    emotion = None if spec.kind == "motion" else spec.emotion
    out = []
    for _ in range(n):
        for _ in range(tries):
            text = phrasings.free_instruction(emotion, spec.intensity, spec.motions, rng, "train",
                                              timing=spec.timing or None)
            if fits(text):
                break
        else:
            raise RuntimeError(f"no free phrasing of clip {spec} fits in {TEXT_TOKENS} tokens")
        out.append(text)
    return out


def alternate_texts(clip, rng: np.random.Generator, n: int) -> list[str]:
    """The clip's instruction plus n-1 other train-split phrasings of the same emotion/intensity/motions."""
    spec = clip.spec
    texts = [spec.instruction or DEFAULT_INSTRUCTION]
    for _ in range(n - 1):
        if spec.kind == "talk_neutral":
            texts.append(DEFAULT_INSTRUCTION)
        elif spec.kind == "motion":
            texts.append(instructions.motion_instruction(spec.motions, rng, "train", timing=spec.timing or None))
        elif spec.motions:
            texts.append(instructions.combined_instruction(spec.emotion, spec.intensity, spec.motions, rng, "train",
                                                           timing=spec.timing or None))
        else:
            texts.append(instructions.emotion_instruction(spec.emotion, spec.intensity, rng, "train"))
    return texts


def prepare(out: Path, clips: int, seed: int, config: str = "demo", workers: int = 1, free: int = 0) -> None:
    """`free` > 0: each clip also gets that many phrasings as people type them (free_texts), after the usual
    TEXTS_PER_CLIP, drawn from their own random stream (the usual texts stay what they are without it)."""
    cfg = get_config(config)
    out.mkdir(parents=True, exist_ok=True)
    clip_dir = out / "clips"
    generate(GenerateConfig(out=str(clip_dir), clips=clips, seed=seed, split="train",
                            size=cfg.media.image_size), progress=True, workers=workers)
    ds = ClipDataset(clip_dir, load_frames=False)
    renderer = FaceRenderer(cfg.media.image_size)
    tok = build_tokenizer(cfg.text)
    enc = build_text_encoder(cfg.text, pretrained=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed + 7)
    free_rng = np.random.default_rng(seed + 11)
    per = 64
    for k, start in enumerate(range(0, len(ds), per)):
        shard = out / f"part_{k:04d}.npz"
        if shard.exists():
            continue
        lm_imgs, key_imgs, tokens, masks, pooled, meta = [], [], [], [], [], []
        for i in range(start, min(start + per, len(ds))):
            clip = ds[i]
            ident = identity(clip.identity)
            if cfg.vae.landmark_points:          # `latents` recomputes the coordinates; keep the frame count
                lm_imgs.append(np.zeros((len(clip.controls), 0), np.uint8))
                key_imgs.append(np.zeros(0, np.uint8))
            else:
                lm_imgs.append(np.stack([landmark_image(renderer.landmarks(ident, c), cfg.media.image_size,
                                                        cfg.vae.landmark_size) for c in clip.controls]))
                key_imgs.append(landmark_image(renderer.landmarks(ident, clip.keyframe), cfg.media.image_size,
                                               cfg.vae.landmark_size))
            texts = alternate_texts(clip, rng, TEXTS_PER_CLIP)
            if free:
                texts += free_texts(clip, free_rng, free, fits=lambda x: int(tok([x]).mask.sum()) <= TEXT_TOKENS)
            t = tok(texts)
            with torch.no_grad():
                emb, pool = enc(torch.from_numpy(t.ids), torch.from_numpy(t.mask))
            L = min(TEXT_TOKENS, t.ids.shape[1])
            if int(t.mask.sum(1).max()) > L:
                raise RuntimeError(f"instruction longer than {L} tokens: {texts}")
            tokens.append(emb[:, :L].numpy().astype(np.float16))
            masks.append(t.mask[:, :L].astype(np.uint8))
            pooled.append(pool.numpy().astype(np.float16))
            meta.append({"index": i, "texts": texts})
        lengths = np.array([len(x) for x in lm_imgs])
        tmp = shard.with_suffix(".tmp.npz")
        np.savez(tmp, landmark_images=np.concatenate(lm_imgs), lengths=lengths, keyframe_images=np.stack(key_imgs),
                 tokens=np.stack(tokens), token_mask=np.stack(masks), pooled=np.stack(pooled),
                 meta=np.array(json.dumps(meta)))
        tmp.rename(shard)
        print(f"[prepare] part {k}: clips {start}..{start + len(lm_imgs) - 1}", flush=True)


@torch.no_grad()
def encode_latents(data: Path, vae_state: Path, config: str = "demo", threads: int = 1,
                   checkpoint_stats: bool = False) -> Path:
    """Motion latents for every frame and keyframe, with the VAE's (frozen) motion encoder. `checkpoint_stats`
    (a packaged checkpoint only): normalise with the checkpoint's own motion_shift / motion_scale instead of
    this folder's statistics, so that a generator fine-tuned on part of the data fits the shipped VAE exactly."""
    from ..engine.modules.vae import VAE

    cfg = get_config(config)
    torch.set_num_threads(threads)
    vae = VAE(cfg.vae, cfg.media.image_size)
    if str(vae_state).endswith(".safetensors"):                 # a packaged checkpoint (demo.safetensors)
        state = {"model": {k: v for k, v in init_weights(str(vae_state), "vae.").items()
                           if k not in ("motion_shift", "motion_scale")}}
    else:
        state = torch.load(vae_state, map_location="cpu", weights_only=False)
    # only the motion (and keyframe) encoders are used here: a state of any decoder variant will do
    load_vae_weights(vae, state["model"] if "model" in state else state, new_parts_ok=True)
    vae.eval()
    frames, keys = [], []
    ds = ClipDataset(data / "clips", load_frames=False) if cfg.vae.landmark_points else None
    renderer, size = FaceRenderer(cfg.media.image_size), cfg.media.image_size
    for part in sorted(data.glob("part_*.npz")):
        z = np.load(part)
        if ds is not None:                       # the coordinates, recomputed from the clips' controls
            clips = [ds[m["index"]] for m in json.loads(str(z["meta"]))]
            x_all = np.concatenate([motion_input(np.stack([renderer.landmarks(identity(c.identity), k)
                                                           for k in c.controls]), size, cfg.vae) for c in clips])
            x_key = motion_input(np.stack([renderer.landmarks(identity(c.identity), c.keyframe) for c in clips]),
                                 size, cfg.vae)
        else:
            x_all = z["landmark_images"].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
            x_key = z["keyframe_images"].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
        lat = [vae.encode_motion_raw(torch.from_numpy(x_all[i:i + 512])).numpy() for i in range(0, len(x_all), 512)]
        frames.append(np.concatenate(lat))
        keys.append(vae.encode_motion_raw(torch.from_numpy(x_key)).numpy())
    frames = np.concatenate(frames)
    shift, scale = latent_stats(frames)
    if checkpoint_stats:
        if not str(vae_state).endswith(".safetensors"):
            raise ValueError(f"--checkpoint-stats needs a packaged checkpoint (.safetensors), not {vae_state}")
        w = init_weights(str(vae_state), "vae.")
        shift, scale = (w[k].float().numpy().astype(frames.dtype) for k in ("motion_shift", "motion_scale"))
    out = data / "latents.npz"
    np.savez(out, frames=frames, keyframes=np.concatenate(keys), shift=shift, scale=scale,
             vae_step=np.array(state.get("step", -1)), vae_sha256=np.array(file_sha256(Path(vae_state))))
    return out


def data_dirs(data: Path | str | list) -> list[Path]:
    """Prepared data folders from a path, a comma-separated string of paths, or a list of either."""
    items = data if isinstance(data, (list, tuple)) else [data]
    dirs = [Path(p) for item in items for p in str(item).split(",") if p.strip()]
    if not dirs:
        raise ValueError("no data folder given")
    for d in dirs:
        if not (d / "latents.npz").is_file():
            raise FileNotFoundError(f"{d}/latents.npz not found: run `train prepare` and `train latents` first")
    return dirs


def check_same_vae(first_dir: Path, first, other_dir: Path, other, shift_tolerance: float = 0.25,
                   scale_ratio: float = 1.5) -> None:
    """Refuse to mix latents of different VAEs: the VAE file's digest (when both folders recorded it) and the
    VAE step must agree, and each dimension's mean must lie within `shift_tolerance` of the first folder's std
    and its std within a factor `scale_ratio` (two samples of one world differ far less: 4500 fresh clips vs
    the 1500 of data/motion, 0.05 std and a factor 1.12 at most; another VAE's latents differ by whole stds)."""
    digests = [str(z["vae_sha256"]) if "vae_sha256" in z else None for z in (first, other)]
    if None not in digests and digests[0] != digests[1]:
        raise ValueError(f"{other_dir} and {first_dir} hold latents of different VAE files: encode both with the "
                         "same VAE (`train latents --vae ...`)")
    if int(first["vae_step"]) != int(other["vae_step"]):
        raise ValueError(f"{other_dir} holds latents of VAE step {int(other['vae_step'])}, {first_dir} of step "
                         f"{int(first['vae_step'])}: encode both with the same VAE (`train latents --vae ...`)")
    shift_off = float(np.max(np.abs(other["shift"] - first["shift"]) / first["scale"]))
    ratio = float(np.max(np.maximum(other["scale"] / first["scale"], first["scale"] / other["scale"])))
    if shift_off > shift_tolerance or ratio > scale_ratio:
        raise ValueError(f"{other_dir}'s latent statistics differ from {first_dir}'s (means by {shift_off:.2f} "
                         f"of a std, stds by a factor {ratio:.2f}): not latents of the same VAE")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def latent_stats(raw: np.ndarray, floor: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of raw motion latents (N, M); stds below `floor` x the median std are
    raised to it, so near-constant dimensions are not blown up into noise."""
    shift = raw.mean(0)
    std = raw.std(0)
    return shift.astype(np.float32), np.maximum(std, floor * np.median(std)).astype(np.float32)


class MotionData:
    """Everything the motion trainer samples from, in memory (a few hundred MB per ~1500 clips).

    `data` is one prepared folder or several (`train motion --data data/motion,data/motion_more`): their clips
    are concatenated and every latent is normalised with the first folder's statistics, so all of them must
    hold latents of the same VAE (`check_same_vae`)."""

    def __init__(self, data: Path | str | list, config: str = "demo"):
        cfg = get_config(config)
        dirs = data_dirs(data)
        first = np.load(dirs[0] / "latents.npz")
        self.shift, self.scale = first["shift"], first["scale"]        # the VAE's motion_shift / motion_scale
        frames, keyframes, tokens, masks, pooled, lengths, clips = [], [], [], [], [], [], []
        for d in dirs:
            lat = first if d == dirs[0] else np.load(d / "latents.npz")
            check_same_vae(dirs[0], first, d, lat)
            parts = [np.load(p) for p in sorted(d.glob("part_*.npz"))]
            dir_lengths = np.concatenate([z["lengths"] for z in parts])
            if len(lat["frames"]) != dir_lengths.sum():
                raise RuntimeError(f"{d}/latents.npz does not match the prepared parts: run `train latents` again")
            for z in parts:
                tokens.append(z["tokens"])
                masks.append(z["token_mask"])
                pooled.append(z["pooled"])
            lengths.append(dir_lengths)
            ds = ClipDataset(d / "clips", load_frames=False)
            clips.extend(ds[i] for i in range(len(dir_lengths)))
            frames.append(lat["frames"])
            keyframes.append(lat["keyframes"])
        self.latents = (np.concatenate(frames) - self.shift) / self.scale     # normalised, as the VAE emits them
        self.keyframes = (np.concatenate(keyframes) - self.shift) / self.scale
        self.tokens = np.concatenate(tokens)          # (C, K, L, Dt) fp16
        self.token_mask = np.concatenate(masks)       # (C, K, L)
        self.pooled = np.concatenate(pooled)          # (C, K, Dt) fp16
        lengths = np.concatenate(lengths)
        self.frame_offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.audio = [c.audio for c in clips]
        self.controls = np.concatenate([c.controls for c in clips]).astype(np.float32)   # (frames, NUM_CONTROLS)
        self.pose = np.concatenate([c.pose for c in clips]).astype(np.float32)
        self.au_frames = np.concatenate([c.au_frames for c in clips])
        self.au_clip = np.stack([c.au_clip for c in clips]).astype(np.float32)
        self.target_aus = np.stack([c.target_aus for c in clips]).astype(np.float32)
        self.intensity = np.array([c.intensity for c in clips])
        self.kind = [c.kind for c in clips]
        self.identity = np.array([c.identity for c in clips])
        self.lengths = lengths
        self.spf = cfg.media.samples_per_frame

    def __len__(self) -> int:
        return len(self.lengths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train prepare|latents")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default="data/motion")
    p.add_argument("--clips", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="demo")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--free-texts", type=int, default=0,
                   help="per clip, this many more phrasings as people type them (graded words, idioms, exclamation, "
                        "comparison, hedging, described motions; avatarworld/phrasings.py)")
    q = sub.add_parser("latents")
    q.add_argument("--data", default="data/motion")
    q.add_argument("--vae", default="runs/vae/state.pt")
    q.add_argument("--config", default="demo")
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--checkpoint-stats", action="store_true",
                   help="normalise with the --vae checkpoint's latent statistics (a fine-tune on part of the data)")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        if args.free_texts < 0:
            ap.error("--free-texts must be >= 0")
        prepare(Path(args.out), args.clips, args.seed, args.config, args.workers, args.free_texts)
    else:
        print(encode_latents(Path(args.data), Path(args.vae), args.config, args.threads, args.checkpoint_stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
