"""The bundled demo: one held-out portrait speaking one held-out sentence under four instructions.

`run_demo(out_dir)` writes
- `demo.mp4`: the four clips side by side in a 2x2 mosaic, each with its instruction written under it,
  over the one shared audio track (same sentence, same noise seed: only the instruction differs, so the
  clips can be compared frame by frame while the audio plays once);
- `demo_grid.png`: one row per instruction, six columns at fixed times of the sentence.

Weights: the shipped demo checkpoint (`engine.loader.DEMO_WEIGHTS`, found through the installed package); a
missing checkpoint is an error (`MissingWeightsError`), random weights only when asked for.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_PORTRAIT = ASSETS / "demo_portrait.png"
DEMO_SPEECH = ASSETS / "demo_speech.wav"
DEMO_INSTRUCTIONS = (
    "talk happily",
    "speak with an angry face, very strongly",
    "talk sadly, a little",
    "raise your eyebrows and nod",
)
FALLBACK_SECONDS = 4.0
GRID_COLUMNS = 6
CAPTION_FONT_SIZE = 10


def write_demo_portrait(path: str | Path = DEMO_PORTRAIT, size: int = 128) -> Path:
    """Render the bundled portrait: the first held-out identity, neutral controls, `size` px."""
    from .avatarworld.controls import neutral
    from .avatarworld.identity import identity, identity_ids
    from .avatarworld.render import FaceRenderer

    rgb = FaceRenderer(size).render(identity(identity_ids("heldout")[0]), neutral())
    path = Path(path)
    Image.fromarray(rgb).save(path, format="PNG", optimize=True)
    return path


def grid_frame_indices(n_frames: int, columns: int = GRID_COLUMNS) -> list[int]:
    """`columns` frame indices evenly spread over the clip, first and last frames excluded."""
    return [int(round(x)) for x in np.linspace(0, n_frames - 1, columns + 2)[1:-1]]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                                    # Pillow < 10.1
        return ImageFont.load_default()


def _wrap(text: str, width: int, draw: ImageDraw.ImageDraw, font) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def caption_bar(texts: list[str], width: int) -> list[np.ndarray]:
    """One white (h, width, 3) uint8 caption image per text, all the same height (wrapped lines)."""
    font = _font(CAPTION_FONT_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(t, width - 4, probe, font) for t in texts]
    line_h = CAPTION_FONT_SIZE + 2
    height = 4 + line_h * max(len(w) for w in wrapped)
    height += height % 2
    out = []
    for lines in wrapped:
        img = Image.new("RGB", (width, height), (255, 255, 255))
        d = ImageDraw.Draw(img)
        for k, line in enumerate(lines):
            d.text((2, 2 + k * line_h), line, fill=(0, 0, 0), font=font)
        out.append(np.asarray(img))
    return out


def mosaic(clips: list[np.ndarray], captions: list[str]) -> np.ndarray:
    """Four (N,S,S,3) clips -> (N, 2*(S+c), 2*S, 3): 2x2 tiles, each with its caption underneath."""
    n, s = clips[0].shape[:2]
    bars = caption_bar(captions, s)
    tiles = [np.concatenate([clip, np.broadcast_to(bar, (n, *bar.shape))], axis=1)
             for clip, bar in zip(clips, bars)]
    top = np.concatenate(tiles[:2], axis=2)
    bottom = np.concatenate(tiles[2:4], axis=2)
    return np.ascontiguousarray(np.concatenate([top, bottom], axis=1))


def run_demo(out_dir: str | Path, steps: int | None = None, random_weights: bool | None = None,
             progress: bool = True, threads: int | None = None, seed: int = 0, log=None,
             guidance: float | None = None, mode: str = "world") -> dict[str, Path]:
    """Render the demo into `out_dir`; returns {"video": DIR/demo.mp4, "grid": DIR/demo_grid.png}.

    random_weights: True = random (announced) even when the checkpoint is present; None or False = the
    shipped checkpoint or `MissingWeightsError`. mode: "world" (the world face), "photo" (a real photograph in
    photo mode: `demo_photo.mp4` / `demo_photo_grid.png`, see `photo_demo`) or "auto" (both, when photo mode's
    packages are installed).
    """
    from .engine.config import get_config
    from .engine.loader import DEMO_WEIGHTS, load_pipeline
    from .engine.media.audio_io import load_audio, normalize_loudness
    from .engine.media.image_io import load_portrait
    from .engine.media.video_io import write_png_grid, write_video

    say = log or (lambda m: print(m, file=sys.stderr))
    cfg = get_config("demo")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not random_weights and not DEMO_WEIGHTS.is_file():    # never fall back to random weights in silence
        from .engine.loader import MissingWeightsError

        raise MissingWeightsError(f"the shipped demo checkpoint is missing (expected at {DEMO_WEIGHTS}); "
                                  "reinstall instructavatar, or pass --random-weights to test the plumbing")
    random_weights = bool(random_weights)
    weights = None if random_weights else DEMO_WEIGHTS
    pipeline = load_pipeline(cfg, weights=weights, random_weights=random_weights, steps=steps, threads=threads,
                             seed=seed, announce=say, guidance=guidance)

    rate, fps = cfg.media.sample_rate, cfg.media.fps
    portrait = pipeline.prepare(load_portrait(DEMO_PORTRAIT, cfg.media.image_size))
    if DEMO_SPEECH.is_file():
        audio = load_audio(DEMO_SPEECH, rate, cfg.max_audio_seconds)
        model_audio = normalize_loudness(audio)
    else:
        say(f"the demo speech {DEMO_SPEECH} is missing; using {FALLBACK_SECONDS:g} s of silence")
        audio = np.zeros(int(FALLBACK_SECONDS * rate), np.float32)
        model_audio = audio

    from tqdm import tqdm

    n_frames = -(-len(audio) // cfg.media.samples_per_frame)
    bar = tqdm(total=n_frames * len(DEMO_INSTRUCTIONS), unit="frame", desc="demo", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    clips = []
    t0 = time.perf_counter()
    try:
        for text in DEMO_INSTRUCTIONS:
            clips.append(pipeline.generate(portrait, audio=model_audio, instruction=text, seed=seed,
                                           progress=bar.update))
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    photo_paths = {}
    if mode in ("photo", "auto"):
        photo_paths = photo_demo(pipeline, out_dir, audio, model_audio, seed, say, clips, required=(mode == "photo"))

    video = write_video(out_dir / "demo.mp4", mosaic(clips, list(DEMO_INSTRUCTIONS)), fps=fps, audio=audio,
                        sample_rate=rate)
    cols = grid_frame_indices(len(clips[0]))
    grid = write_png_grid(out_dir / "demo_grid.png", [[clip[i] for i in cols] for clip in clips],
                          row_labels=list(DEMO_INSTRUCTIONS), col_labels=[f"{i / fps:.2f} s" for i in cols])
    seconds = len(audio) / rate
    say(f"demo: {len(DEMO_INSTRUCTIONS)} clips x {len(clips[0])} frames ({seconds:.2f} s) in {elapsed:.1f} s, "
        f"real-time factor {elapsed / (seconds * len(DEMO_INSTRUCTIONS)):.3f} per clip; "
        f"{'RANDOM weights' if random_weights else DEMO_WEIGHTS.name}, {pipeline.sampler.num_steps} steps")
    return {"video": video, "grid": grid, **photo_paths}


PHOTO_DEMO = "astronaut"           # engine/photo/samples.py: read from scikit-image at run time
PHOTO_DEMO_SIZE = 256


def photo_demo(pipeline, out_dir: Path, audio: np.ndarray, model_audio: np.ndarray, seed: int, say,
               world_clips: list[np.ndarray], required: bool = False) -> dict[str, Path]:
    """The same sentence and instructions on a real photograph (photo mode), beside the world face's clips:
    `demo_photo.mp4` (world face | photo for each instruction, 2x2) and `demo_photo_grid.png`. Skipped with a
    message (an error when `required`) where photo mode's packages are missing."""
    from .engine.media.video_io import write_png_grid, write_video

    try:
        from .engine.photo.decoder import prepare_photo
        from .engine.photo.samples import load_sample

        portrait = prepare_photo(pipeline, load_sample(PHOTO_DEMO), size=PHOTO_DEMO_SIZE)
    except (ImportError, FileNotFoundError) as e:
        if required:
            raise
        say(f"demo: photo mode skipped ({e}); pip install 'instructavatar[photo]' for it")
        return {}
    k = PHOTO_DEMO_SIZE // pipeline.cfg.media.image_size
    tiles = []
    for text, w in zip(DEMO_INSTRUCTIONS, world_clips):
        p = pipeline.generate(portrait, audio=model_audio, instruction=text, seed=seed)
        w = w.repeat(k, axis=1).repeat(k, axis=2)                       # nearest upscale to the photo's size
        tiles.append(np.concatenate([w, p], axis=2))                    # (N, S, 2S, 3)
    fps = pipeline.cfg.media.fps
    n, s = tiles[0].shape[:2]
    bars = caption_bar(list(DEMO_INSTRUCTIONS), 2 * s)
    rows = [np.concatenate([t, np.broadcast_to(b, (n, *b.shape))], axis=1) for t, b in zip(tiles, bars)]
    video = np.ascontiguousarray(np.concatenate([np.concatenate(rows[:2], axis=2),
                                                 np.concatenate(rows[2:], axis=2)], axis=1))
    out_video = write_video(out_dir / "demo_photo.mp4", video, fps=fps, audio=audio,
                            sample_rate=pipeline.cfg.media.sample_rate)
    cols = grid_frame_indices(n, 4)
    grid = write_png_grid(out_dir / "demo_photo_grid.png", [[t[i] for i in cols] for t in tiles],
                          row_labels=list(DEMO_INSTRUCTIONS), col_labels=[f"{i / fps:.2f} s" for i in cols])
    say(f"demo: photo mode on {PHOTO_DEMO} (scikit-image), {PHOTO_DEMO_SIZE} px, beside the world face")
    return {"photo_video": out_video, "photo_grid": grid}
