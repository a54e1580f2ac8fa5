"""Quality tables of a trained model on the synthetic world's held-out data (never tuned on).

    instructavatar train quality main        --clips 48 [--weights FILE] [--audio-only RUN --vae STATE]
    instructavatar train quality paraphrase  --clips 48
    instructavatar train quality steps       --clips 24 --steps-list 1,2,4,8,16,50
    instructavatar train quality streaming   --clips 24
    instructavatar train quality ablations   --vae runs/vae/state.pt --run full=runs/abl_full ...

Every table runs on the same evaluation set: clips ``spec_for_index(seed, i, "heldout")`` of the world,
i.e. held-out identities, held-out voices and sentences, and held-out instruction phrasings. For each clip the
model gets the identity's neutral portrait (rendered), the clip's audio (zeros for motion-only clips) and the
clip's instruction, and generates frames through the same `Pipeline` the CLI uses; the shipped evaluators
(avatarworld/evaluators.py, trained on renderer output only) read the frames and `avatarworld.metrics`
compares them with the clip's ground-truth controls. The renderer row evaluates the ground-truth frames
themselves (the upper bound of what the evaluators can credit).

Rows are printed as a markdown table; ``--json`` writes the per-clip numbers too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..avatarworld import controls as C
from ..avatarworld import instructions, metrics
from ..avatarworld.clips import Clip, make_clip, spec_for_index

SPEECH_CACHE = os.path.expanduser("~/.cache/instructavatar/speech")
EVAL_SEED = 1000                       # the evaluation set: clips (EVAL_SEED, i, "heldout")
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("AU_F1", "au_f1", "{:.3f}"),
    ("AU_Emo", "au_emo", "{:.3f}"),
    ("intensity acc", "intensity_acc", "{:.3f}"),
    ("lip-sync corr", "lipsync_corr", "{:.3f}"),
    ("lip-sync MAE", "lipsync_mae", "{:.3f}"),
    ("pose MAE (deg)", "pose_mae", "{:.2f}"),
    ("motion ok", "motion_ok", "{:.3f}"),
)


# --------------------------------------------------------------------------------------------------- data
def eval_clips(n: int, seed: int = EVAL_SEED) -> list[Clip]:
    """The first n clips of the held-out evaluation set (deterministic; speech cached)."""
    return [make_clip(spec_for_index(seed, i, "heldout"), cache_dir=SPEECH_CACHE) for i in range(n)]


def portrait_of(clip: Clip, size: int) -> np.ndarray:
    """The clip identity's neutral portrait, as a user would give it (S, S, 3) uint8."""
    from ..avatarworld.identity import identity
    from ..avatarworld.render import FaceRenderer

    return FaceRenderer(size).render(identity(clip.identity), C.neutral())


def truth_frames(clip: Clip, size: int) -> np.ndarray:
    from ..avatarworld.identity import identity
    from ..avatarworld.render import FaceRenderer

    r, ident = FaceRenderer(size), identity(clip.identity)
    return np.stack([r.render(ident, c) for c in clip.controls])


def clip_truth(clip: Clip, index: int) -> metrics.ClipTruth:
    spec = clip.spec
    return metrics.ClipTruth(
        clip_id=str(index), controls=clip.controls, emotion=spec.emotion,
        intensity=spec.intensity if spec.kind == "talk" and spec.intensity > 0 else None,
        motions=tuple(spec.motions), speech=clip.controls[:, C.SPEECH_SLICE])


def heldout_text(clip: Clip, index: int) -> str | None:
    """The clip's own (held-out) phrasing; None (= the default instruction) for plain neutral talk."""
    return clip.spec.instruction or None


def seen_text(clip: Clip, index: int) -> str | None:
    """A train-split phrasing of the same content (emotion, intensity, motions, timing) as the clip's."""
    spec = clip.spec
    rng = np.random.default_rng([clip.spec.seed % 2**32, 7])
    if spec.kind == "talk_neutral":
        return None
    if spec.kind == "motion":
        return instructions.motion_instruction(spec.motions, rng, "train", timing=spec.timing or None)
    if spec.motions:
        return instructions.combined_instruction(spec.emotion, spec.intensity, spec.motions, rng, "train",
                                                 timing=spec.timing or None)
    return instructions.emotion_instruction(spec.emotion, spec.intensity, rng, "train")


def no_text(clip: Clip, index: int) -> str | None:
    return None


# --------------------------------------------------------------------------------------------------- models
def pipeline_from_checkpoint(weights: str | Path | None, steps: int | None, threads: int | None,
                             guidance: float | None = None, backend: str = "auto"):
    from ..engine.loader import load_pipeline

    return load_pipeline("demo", weights=weights, steps=steps, threads=threads, guidance=guidance, backend=backend)


def pipeline_with_motion(weights: str | Path | None, motion_file: str | Path, steps: int | None,
                         threads: int | None, guidance: float | None = None):
    """A checkpoint's pipeline (VAE, text) with its motion generator replaced by a packaged one
    (`train package --motion-only`: the shipped audio-only lower bound)."""
    from ..engine.config import get_config
    from ..engine.loader import build_model
    from ..engine.modules.torch_backend import TorchBackend
    from ..engine.pipeline import Pipeline
    from ..engine.tokenizer import build_tokenizer
    from .package import load_motion_only

    cfg = get_config("demo")
    model = build_model(cfg, weights)
    load_motion_only(model, motion_file)
    return Pipeline(cfg, TorchBackend(model.eval(), threads=threads), build_tokenizer(cfg.text), steps=steps,
                    guidance=guidance)


def audio_only_pipeline(args):
    """The main table's lower bound: a packaged generator (.safetensors) on the checkpoint's VAE, or a motion
    training state (.pt) on the --vae training state."""
    if str(args.audio_only).endswith(".safetensors"):
        return pipeline_with_motion(args.weights, args.audio_only, args.steps, args.threads)
    return pipeline_from_runs(args.vae, args.audio_only, args.steps, args.threads)


def pipeline_from_runs(vae_state: str | Path, motion_state: str | Path, steps: int | None,
                       threads: int | None, config: str = "demo", guidance: float | None = None):
    """A pipeline over training states (any ablation structure): VAE state + motion state, checked strictly."""
    import torch

    from ..engine.config import get_config
    from ..engine.modules.model import InstructAvatar
    from ..engine.modules.torch_backend import TorchBackend
    from ..engine.modules.weights import check_state_dict
    from ..engine.pipeline import Pipeline
    from ..engine.tokenizer import build_tokenizer
    from .package import combined_state, with_zero_detail
    from .train_motion import config_for_flags

    vae = torch.load(vae_state, map_location="cpu", weights_only=False)
    motion = torch.load(motion_state, map_location="cpu", weights_only=False)
    cfg = config_for_flags(get_config(config), motion.get("flags", {}))
    model = InstructAvatar(cfg, pretrained_text=True)
    state = with_zero_detail(model.trainable_state_dict(), combined_state(vae, motion))
    check_state_dict(model.trainable_state_dict(), state, f"{vae_state} + {motion_state}")
    model.load_state_dict(state, strict=False)      # strict above, minus the frozen text encoder
    return Pipeline(cfg, TorchBackend(model.eval(), threads=threads), build_tokenizer(cfg.text), steps=steps,
                    guidance=guidance)


# --------------------------------------------------------------------------------------------------- running
Output = tuple[np.ndarray, "np.ndarray | None"]       # frames (T,S,S,3) uint8, motion latents (T,M) or None


@dataclass
class SystemResult:
    name: str
    summary: dict                   # frame evaluators on the video
    clips: list[dict]
    seconds: float                  # wall time spent generating (not evaluating)
    chunks: int                     # chunk steps run
    probe_summary: dict | None = None   # latent probe on the emitted motion (the generator alone)

    @property
    def ms_per_chunk(self) -> float:
        return 1e3 * self.seconds / max(1, self.chunks)


def _evaluator():
    from ..avatarworld.evaluators import load_evaluators

    return load_evaluators()


def _probe(path: str | None):
    from .latent_probe import load_probe

    if path is None:
        from ..engine.loader import DEMO_WEIGHTS

        default = DEMO_WEIGHTS.parent / "latent_probe.safetensors"
        return load_probe(default) if default.is_file() else None
    return load_probe(path)


def generate_offline(pipe, portrait, audio: np.ndarray, text: str | None, seed: int) -> Output:
    """Pipeline.generate (whole audio, chunk by chunk), also returning the emitted motion latents."""
    session, _ = pipe.new_session(portrait, text, seed=seed, keep_motion=True)
    frames = np.concatenate([session.push_audio(audio), session.flush()])
    return frames, np.concatenate(session.motion_log) * pipe.scale


def generate_streaming(pipe, portrait, audio: np.ndarray, text: str | None, seed: int,
                       rng: np.random.Generator) -> Output:
    """Frames pushed in random-size pieces (20..500 ms), as a live stream would; also the emitted motion."""
    session, _ = pipe.new_session(portrait, text, seed=seed, keep_motion=True)
    out, i = [], 0
    rate = pipe.cfg.media.sample_rate
    while i < len(audio):
        n = int(rng.integers(rate // 50, rate // 2))
        out.append(session.push_audio(audio[i:i + n]))
        i += n
    out.append(session.flush())
    return np.concatenate(out), np.concatenate(session.motion_log) * pipe.scale


def run_system(name: str, clips: list[Clip], produce: Callable[[int, Clip], Output], ev, chunk_frames: int,
               probe=None, log=print) -> SystemResult:
    """Evaluate one system: produce(i, clip) -> (frames, motion latents or None) for each clip."""
    from .latent_probe import probe_predict

    results, probed, seconds, chunks = [], [], 0.0, 0
    for i, clip in enumerate(clips):
        t0 = time.perf_counter()
        frames, motion = produce(i, clip)
        seconds += time.perf_counter() - t0
        chunks += -(-len(frames) // chunk_frames)
        truth = clip_truth(clip, i)
        pred = ev.predict(frames, speech_jaw=truth.speech_jaw, temporal=True)
        r = metrics.evaluate_clip(pred, truth, ev.intensity_thresholds)
        r.update(kind=clip.spec.kind, instruction=clip.spec.instruction)
        results.append(r)
        if probe is not None and motion is not None:
            p = probe_predict(probe, motion, truth.speech_jaw, ev.mouth_au_table)
            probed.append(metrics.evaluate_clip(p, truth, ev.intensity_thresholds))
    summary = metrics.summarize(results)
    res = SystemResult(name, summary, results, seconds, chunks, metrics.summarize(probed) if probed else None)
    log(f"[quality] {name}: " + ", ".join(f"{label} {_fmt(summary.get(key), fmt)}" for label, key, fmt in COLUMNS)
        + f" ({res.ms_per_chunk:.0f} ms/chunk)")
    if res.probe_summary:
        log(f"[quality] {name} (latent probe): " + ", ".join(
            f"{label} {_fmt(res.probe_summary.get(key), fmt)}" for label, key, fmt in COLUMNS))
    return res


def model_output(pipe, text_of: Callable[[Clip, int], str | None], size: int, n_clips: int | None = None):
    """produce(i, clip): the model's frames for clip i, sampled with seed i. With `n_clips`, index j is clip
    j % n_clips sampled with seed j: a clip list repeated k times gives each clip k sampling seeds (the first
    pass is the single-seed table's)."""
    def produce(j: int, clip: Clip) -> Output:
        i = j if n_clips is None else j % n_clips
        portrait = pipe.prepare(portrait_of(clip, size))
        return generate_offline(pipe, portrait, clip.audio, text_of(clip, i), seed=j)
    return produce


def truth_output(pipe, size: int):
    """The renderer's frames and the VAE motion encoder's latents of the truth's landmark images."""
    def produce(i: int, clip: Clip) -> Output:
        return truth_frames(clip, size), truth_latents(pipe.backend, clip, size, pipe.cfg.vae)
    return produce


def truth_latents(backend, clip: Clip, size: int, vae_cfg, ident_index: int | None = None) -> np.ndarray:
    """The VAE motion encoder's latents of the clip's landmarks (drawn on identity `ident_index`, default the
    clip's own)."""
    from ..avatarworld.identity import identity
    from ..avatarworld.render import FaceRenderer
    from .vae_data import motion_input

    r = FaceRenderer(size)
    ident = identity(clip.identity if ident_index is None else ident_index)
    x = motion_input(np.stack([r.landmarks(ident, c) for c in clip.controls]), size, vae_cfg)
    return np.concatenate([backend.encode_motion(x[i:i + 64]) for i in range(0, len(x), 64)])


# --------------------------------------------------------------------------------------------------- tables
def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(float(value))


def markdown_table(rows: list[SystemResult], extra: tuple[tuple[str, Callable[[SystemResult], str]], ...] = (),
                   probe: bool = True) -> str:
    """One row per system (frame evaluators on the video); with `probe`, a second block of rows: the latent
    probe on the same systems' emitted motion (the motion generator alone, before the decoder)."""
    head = ["system"] + [c[0] for c in COLUMNS] + [e[0] for e in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r.name] + [_fmt(r.summary.get(key), fmt) for _, key, fmt in COLUMNS] + [f(r) for _, f in extra]
        lines.append("| " + " | ".join(cells) + " |")
    if probe:
        for r in rows:
            if r.probe_summary:
                cells = [f"{r.name}, motion read by the latent probe"] + [
                    _fmt(r.probe_summary.get(key), fmt) for _, key, fmt in COLUMNS] + ["" for _ in extra]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _data(rows: list[SystemResult]) -> dict:
    return {r.name: {"summary": r.summary, "probe_summary": r.probe_summary, "ms_per_chunk": r.ms_per_chunk,
                     "clips": r.clips} for r in rows}


def au_f1_by_kind(rows: list[SystemResult]) -> str:
    """A markdown table of each system's mean clip AU_F1 per clip kind (talk / motion / talk_neutral, with the
    clip count), from the per-clip records: where a margin over the lower bound comes from."""
    kinds = sorted({c["kind"] for r in rows for c in r.clips})
    counts = {k: sum(c["kind"] == k for c in rows[0].clips) for k in kinds}
    head = "| system | " + " | ".join(f"AU_F1, {k} ({counts[k]})" for k in kinds) + " |"
    lines = [head, "|---|" + "---:|" * len(kinds)]
    for r in rows:
        cells = []
        for k in kinds:
            v = [c["au_f1"] for c in r.clips if c["kind"] == k and c["au_f1"] is not None]
            cells.append(f"{np.mean(v):.3f}" if v else "-")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def boundary_ratio(motion: np.ndarray, chunk: int) -> float:
    """Mean frame-to-frame motion change across chunk boundaries / the same within chunks (1.0 = seamless)."""
    d = np.linalg.norm(np.diff(motion, axis=0), axis=1)          # d[t] = |x[t+1] - x[t]|
    at = np.zeros(len(d), bool)
    at[chunk - 1::chunk] = True
    return float(d[at].mean() / max(d[~at].mean(), 1e-12)) if at.any() and (~at).any() else float("nan")


def _ours(pipe) -> str:
    g = f", guidance {pipe.guidance:g}" if pipe.guidance != 1.0 else ""
    return f"ours ({pipe.sampler.num_steps} DDIM steps{g})"


def _demo_weights():
    from ..engine.loader import DEMO_WEIGHTS

    return DEMO_WEIGHTS


def model_pipeline(args):
    """The evaluated model: the --weights checkpoint, with its generator replaced by --motion when given."""
    if getattr(args, "motion", None):
        return pipeline_with_motion(args.weights, args.motion, args.steps, args.threads, args.guidance)
    return pipeline_from_checkpoint(args.weights, args.steps, args.threads, args.guidance, args.backend)


def table_main(args, clips, ev, size, probe) -> tuple[str, dict]:
    pipe = model_pipeline(args)
    chunk = pipe.cfg.stream.chunk_frames
    k, n = args.sample_seeds, len(clips)
    reps = list(clips) * k                    # every model row: each clip sampled with k seeds (the truth once)
    seeds = f", {k} sampling seeds per clip" if k > 1 else ""
    rows = [run_system("ground-truth renderer (upper bound)", clips, truth_output(pipe, size), ev, chunk, probe),
            run_system(_ours(pipe) + seeds, reps, model_output(pipe, heldout_text, size, n), ev, chunk, probe),
            run_system("ours, instruction withheld (default text)" + seeds, reps, model_output(pipe, no_text, size, n),
                       ev, chunk, probe)]
    if args.audio_only:
        base = audio_only_pipeline(args)
        rows.append(run_system("audio-only model (trained without text; lower bound)" + seeds, reps,
                               model_output(base, no_text, size, n), ev, chunk, probe))
    return markdown_table(rows) + "\n\nBy clip kind (video):\n\n" + au_f1_by_kind(rows), _data(rows)


def table_guidance(args, clips, ev, size, probe) -> tuple[str, dict]:
    """Instruction guidance sweep (engine/pipeline.py): quality and time per chunk for each scale."""
    rows = []
    for g in args.guidance_list:
        pipe = pipeline_from_checkpoint(args.weights, args.steps, args.threads, g, args.backend)
        rows.append(run_system(f"guidance {g:g}" + (" (off)" if g == 1 else ""), clips,
                               model_output(pipe, heldout_text, size), ev, pipe.cfg.stream.chunk_frames, probe))
    extra = (("ms / chunk (0.4 s)", lambda r: f"{r.ms_per_chunk:.0f}"),)
    return markdown_table(rows, extra), _data(rows)


def table_paraphrase(args, clips, ev, size, probe) -> tuple[str, dict]:
    """The world's seen vs held-out phrasings, then (training/quality_forms.py) the same per phrasing form of
    instructions as people type them (--forms; --forms-only leaves the world's rows out)."""
    from . import quality_forms

    pipe = model_pipeline(args)
    keep = [c for c in clips if c.spec.kind != "talk_neutral"]
    chunk = pipe.cfg.stream.chunk_frames
    text, data = "", {}
    if not args.forms_only:
        rows = [run_system("seen (train) phrasings", keep, model_output(pipe, seen_text, size), ev, chunk, probe),
                run_system("held-out phrasings", keep, model_output(pipe, heldout_text, size), ev, chunk, probe)]
        text, data = markdown_table(rows), _data(rows)
    if args.forms:
        t, d = quality_forms.table_forms(pipe, clips, args.forms, ev, size, probe, args.sample_seeds, run_system,
                                         model_output, markdown_table, splits=args.form_splits,
                                         weights=None if args.motion else (args.weights or _demo_weights()))
        text, data = (text + "\n\n" if text else "") + t, {**data, **d}
    return text, data


def table_steps(args, clips, ev, size, probe) -> tuple[str, dict]:
    rows = []
    for k in args.steps_list:
        pipe = pipeline_from_checkpoint(args.weights, k, args.threads, args.guidance, args.backend)
        rows.append(run_system(f"{k} steps", clips, model_output(pipe, heldout_text, size), ev,
                               pipe.cfg.stream.chunk_frames, probe))
    chunk_s = pipe.cfg.stream.chunk_frames / pipe.cfg.media.fps
    extra = (("ms / chunk (0.4 s)", lambda r: f"{r.ms_per_chunk:.0f}"),
             ("real-time factor", lambda r: f"{r.ms_per_chunk / 1e3 / chunk_s:.3f}"))
    return markdown_table(rows, extra), _data(rows)


def table_streaming(args, clips, ev, size, probe) -> tuple[str, dict]:
    pipe = pipeline_from_checkpoint(args.weights, args.steps, args.threads, args.guidance, args.backend)
    if getattr(args, "chunk_frames", None):               # the chunk length under test (issue 24; prefix unchanged)
        from dataclasses import replace

        pipe.cfg = replace(pipe.cfg, stream=replace(pipe.cfg.stream, chunk_frames=args.chunk_frames))
    chunk = pipe.cfg.stream.chunk_frames
    offline_out: dict[int, Output] = {}

    def offline(i: int, clip: Clip) -> Output:
        offline_out[i] = model_output(pipe, heldout_text, size)(i, clip)
        return offline_out[i]

    rows = [run_system("offline (whole audio)", clips, offline, ev, chunk, probe)]
    motions, max_diff = [], 0.0

    def streamed(i: int, clip: Clip) -> Output:
        nonlocal max_diff
        portrait = pipe.prepare(portrait_of(clip, size))
        frames, motion = generate_streaming(pipe, portrait, clip.audio, heldout_text(clip, i), seed=i,
                                            rng=np.random.default_rng([clip.spec.seed % 2**32, 11]))
        motions.append(motion)
        max_diff = max(max_diff, float(np.abs(frames.astype(int) - offline_out[i][0].astype(int)).max()))
        return frames, motion

    rows.append(run_system("streaming (random 20-500 ms pushes)", clips, streamed, ev, chunk, probe))
    ratio = float(np.nanmean([boundary_ratio(m, chunk) for m in motions]))
    text = markdown_table(rows) + (
        f"\n\nMax pixel difference streaming vs offline: {max_diff:.0f} (of 255). Motion-latent change across "
        f"chunk boundaries / within chunks: {ratio:.3f} (1.0 = a boundary looks like any other frame step).")
    data = _data(rows)
    data.update(max_pixel_diff=max_diff, boundary_ratio=ratio)
    return text, data


def table_ablations(args, clips, ev, size, probe) -> tuple[str, dict]:
    if not args.run:
        raise SystemExit("give --run NAME=RUN_DIR for each ablation")
    rows = []
    for item in args.run:
        name, _, run = item.partition("=")
        if not name or not (Path(run) / "state.pt").is_file():
            raise SystemExit(f"--run {item!r}: expected NAME=RUN_DIR with RUN_DIR/state.pt")
        pipe = pipeline_from_runs(args.vae, Path(run) / "state.pt", args.steps, args.threads)
        rows.append(run_system(name, clips, model_output(pipe, heldout_text, size), ev,
                               pipe.cfg.stream.chunk_frames, probe))
    return markdown_table(rows), _data(rows)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of uint8 frames (N, S, S, 3)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def decode_controls(backend, appearance: np.ndarray, ident, controls: np.ndarray, size: int,
                    vae_cfg) -> np.ndarray:
    """(T, S, S, 3) frames the VAE decodes from `appearance` and the landmarks of `controls` on identity
    `ident` (what the motion encoder reads: vae_data.motion_input): the VAE alone, as the pipeline drives it."""
    from ..avatarworld.render import FaceRenderer
    from ..engine.media.image_io import to_frames
    from .vae_data import motion_input

    r = FaceRenderer(size)
    x_all = motion_input(np.stack([r.landmarks(ident, c) for c in controls]), size, vae_cfg)
    out = []
    for i in range(0, len(x_all), 32):
        x = x_all[i:i + 32]
        out.append(backend.decode(backend.encode_motion(x), np.repeat(appearance, len(x), 0)))
    return to_frames(np.concatenate(out))


def vae_frames(backend, portrait: np.ndarray, clip: Clip, ident_index: int, size: int, vae_cfg) -> np.ndarray:
    """Frames decoded from `portrait`'s appearance and the landmark images of `clip`'s controls drawn on
    identity `ident_index` (the motion source)."""
    from ..avatarworld.identity import identity
    from ..engine.media.image_io import to_model_input

    app = backend.encode_appearance(to_model_input(portrait))
    return decode_controls(backend, app, identity(ident_index), clip.controls, size, vae_cfg)


SHEET_EXPRESSIONS = (("emotion", "happy"), ("emotion", "surprised"), ("emotion", "angry"), ("emotion", "sad"),
                     ("motion", "raise_eyebrows"), ("motion", "close_eyes"))


def vae_sheet(backend, path: str | Path, size: int, vae_cfg, identities: int = 3, seed: int = 0) -> Path:
    """A picture of what the VAE keeps: for held-out identities, rows of renderer truth (neutral + strong
    expressions) over the VAE's reconstruction of them (portrait appearance + the truth's landmarks)."""
    from PIL import Image

    from ..avatarworld import behaviour
    from ..avatarworld.identity import identity, identity_ids
    from ..avatarworld.render import FaceRenderer
    from ..engine.media.image_io import to_model_input

    r, rng, rows = FaceRenderer(size), np.random.default_rng(seed), []
    for index in identity_ids("heldout", identities):
        ident = identity(index)
        ctrls = [C.neutral()] + [behaviour.emotion_controls(name, 3, 40, rng)[25] if kind == "emotion"
                                 else behaviour.motion_controls(name, 40, rng)[20] for kind, name in SHEET_EXPRESSIONS]
        truth = np.stack([r.render(ident, c) for c in ctrls])
        app = backend.encode_appearance(to_model_input(r.render(ident, C.neutral())))
        decoded = decode_controls(backend, app, ident, np.stack(ctrls), size, vae_cfg)
        rows += [np.concatenate(list(truth), 1), np.concatenate(list(decoded), 1)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)
    return path


def table_vae(args, clips, ev, size, probe) -> tuple[str, dict]:
    """Reconstruction (portrait appearance + the clip's own motion) and motion transfer (appearance of
    clip i's identity, motion of clip i+1's identity) on held-out identities."""
    from ..avatarworld.identity import identity
    from ..avatarworld.render import FaceRenderer

    pipe = pipeline_from_checkpoint(args.weights, args.steps, args.threads, backend=args.backend)
    vae_cfg = pipe.cfg.vae
    if args.sheet:
        print(f"[quality] wrote {vae_sheet(pipe.backend, args.sheet, size, vae_cfg)}", file=sys.stderr)
    rec_psnr, tr_psnr, tr_vs_b, rec_res, tr_res, truth_res = [], [], [], [], [], []
    for i, clip in enumerate(clips):
        portrait = portrait_of(clip, size)
        truth = truth_frames(clip, size)
        rec = vae_frames(pipe.backend, portrait, clip, clip.identity, size, vae_cfg)
        rec_psnr.append(float(_psnr(rec, truth).mean()))
        t = clip_truth(clip, i)
        rec_res.append(metrics.evaluate_clip(ev.predict(rec, speech_jaw=t.speech_jaw), t, ev.intensity_thresholds))
        truth_res.append(metrics.evaluate_clip(ev.predict(truth, speech_jaw=t.speech_jaw), t,
                                               ev.intensity_thresholds))
        other = clips[(i + 1) % len(clips)]
        if other.identity == clip.identity:
            continue
        # A = this clip's identity (appearance), B = the other clip's identity, whose motion is transferred
        moved = vae_frames(pipe.backend, portrait, clip, other.identity, size, vae_cfg)
        r = FaceRenderer(size)
        a_with_motion = truth
        b_with_motion = np.stack([r.render(identity(other.identity), c) for c in clip.controls])
        tr_psnr.append(float(_psnr(moved, a_with_motion).mean()))
        tr_vs_b.append(float(_psnr(moved, b_with_motion).mean()))
        tr_res.append(metrics.evaluate_clip(ev.predict(moved, speech_jaw=t.speech_jaw), t, ev.intensity_thresholds))
    summ = {"truth": metrics.summarize(truth_res), "reconstruction": metrics.summarize(rec_res),
            "transfer": metrics.summarize(tr_res)}
    lines = ["| frames | PSNR vs A's truth (dB) | PSNR vs B's render (dB) | AU_F1 | frame AU F1 | lip-sync corr |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, key, p, pb in (("ground-truth renderer", "truth", None, None),
                             ("reconstruction (A's portrait + A's motion)", "reconstruction", rec_psnr, None),
                             ("transfer (A's portrait + B's motion)", "transfer", tr_psnr, tr_vs_b)):
        s = summ[key]
        lines.append(f"| {name} | {_fmt(np.mean(p) if p else None, '{:.2f}')} | "
                     f"{_fmt(np.mean(pb) if pb else None, '{:.2f}')} | {_fmt(s['au_f1'], '{:.3f}')} | "
                     f"{_fmt(s['au_frame_f1'], '{:.3f}')} | {_fmt(s['lipsync_corr'], '{:.3f}')} |")
    return "\n".join(lines), {"psnr_reconstruction": rec_psnr, "psnr_transfer_vs_a": tr_psnr,
                              "psnr_transfer_vs_b": tr_vs_b, **summ}


def table_precision(args, clips, ev, size, probe) -> tuple[str, dict]:
    """The int8 graphs' quality cost (issue 23): the main table's "ours" row on the ONNX Runtime pipeline in fp32
    and with the export's int8 graphs (`load_pipeline(precision="int8")`), same clips and sampling seeds. Only
    the decoder has an int8 graph, so both rows denoise the same latents (the latent probe would read them
    alike: not run) and the difference is the decoder's alone; printed per clip sample, paired."""
    from ..engine.loader import load_pipeline

    k, n = args.sample_seeds, len(clips)
    reps = list(clips) * k
    seeds = f", {k} sampling seeds per clip" if k > 1 else ""
    rows = []
    for precision in ("fp32", "int8"):
        pipe = load_pipeline("demo", weights=args.weights, steps=args.steps, threads=args.threads,
                             guidance=args.guidance, backend="ort", precision=precision)
        rows.append(run_system(f"{_ours(pipe)}, ONNX Runtime {precision}{seeds}", reps,
                               model_output(pipe, heldout_text, size, n), ev, pipe.cfg.stream.chunk_frames))
    lines = []
    for key, label in (("au_f1", "AU_F1"), ("au_emo", "AU_Emo"), ("lipsync_corr", "lip-sync corr")):
        a = np.array([c.get(key) for c in rows[0].clips], dtype=float)
        b = np.array([c.get(key) for c in rows[1].clips], dtype=float)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.any():
            d = b[ok] - a[ok]
            lines.append(f"- {label}: int8 - fp32 = {d.mean():+.4f} over {int(ok.sum())} paired clip samples "
                         f"(mean |diff| {np.abs(d).mean():.4f}, {int((d != 0).sum())} samples differ)")
    text = markdown_table(rows) + "\n\nPaired, int8 against fp32:\n\n" + "\n".join(lines)
    return text, _data(rows)


TABLES = {"vae": table_vae, "main": table_main, "paraphrase": table_paraphrase, "steps": table_steps,
          "streaming": table_streaming, "ablations": table_ablations, "guidance": table_guidance,
          "precision": table_precision}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="instructavatar train quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("table", choices=sorted(TABLES))
    ap.add_argument("--clips", type=int, default=48, help="first N clips of the held-out evaluation set")
    ap.add_argument("--seed", type=int, default=EVAL_SEED, help="evaluation set seed (changing it = another set)")
    ap.add_argument("--weights", default=None, help="model checkpoint (default: the shipped demo checkpoint)")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the config's)")
    ap.add_argument("--sample-seeds", type=int, default=1,
                    help="main: sample each clip with this many seeds (seeds i, i + N, ...; every model row alike) "
                         "and average; whether a silent clip blinks depends on the seed")
    ap.add_argument("--forms", default="all",
                    help="paraphrase: phrasing forms of instructions as people type them (avatarworld/phrasings.py), "
                         "'all', 'none' or a comma list, each seen vs held out")
    ap.add_argument("--forms-only", action="store_true", help="paraphrase: leave out the world's own two rows")
    ap.add_argument("--form-splits", default="train,heldout", type=lambda v: tuple(v.split(",")),
                    help="paraphrase: which phrasing splits of each form to run (train,heldout | heldout)")
    ap.add_argument("--motion", default=None,
                    help="main, paraphrase: the --weights checkpoint with its generator replaced by a packaged one "
                         "(`train package --motion-only RUN/state.pt --out FILE`; a generator fine-tune)")
    ap.add_argument("--steps-list", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16, 50])
    ap.add_argument("--guidance", type=float, default=None,
                    help="instruction guidance scale (default: the config's; 1 = off)")
    ap.add_argument("--guidance-list", type=lambda s: [float(x) for x in s.split(",")], default=[1, 1.5, 2, 3, 4])
    ap.add_argument("--vae", default="runs/vae/state.pt", help="VAE training state (for --audio-only, ablations)")
    ap.add_argument("--audio-only", default=None,
                    help="the main table's lower bound: a packaged generator (default: the shipped "
                         "assets/demo/audio_only.safetensors, with the --weights checkpoint's VAE) or the motion "
                         "state of a --no-text run (with --vae); 'none' leaves the row out")
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR of an ablation (repeatable)")
    ap.add_argument("--probe", default=None, help="latent probe (default: the one shipped beside the checkpoint)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default="auto",
                    help="auto (ONNX Runtime where the shipped export matches; torch for main and vae, whose "
                         "ground-truth rows encode motion), ort or torch")
    ap.add_argument("--chunk-frames", type=int, default=None,
                    help="streaming: frames per chunk (default: the config's; the prefix stays the config's)")
    ap.add_argument("--json", default=None, help="write summaries and per-clip numbers here")
    ap.add_argument("--sheet", default=None, help="vae: also write a truth-over-reconstruction picture (PNG) here")
    ap.add_argument("--summary-json", default=None, help="write the table and the summaries only (small)")
    args = ap.parse_args(argv)
    # main and vae score ground-truth motion too, which needs the torch backend's motion encoder
    if args.backend == "auto" and args.table in ("main", "vae"):
        args.backend = "torch"
    if args.sample_seeds < 1:
        ap.error("--sample-seeds must be >= 1")
    from .quality_forms import parse_forms

    try:
        args.forms = parse_forms(args.forms)
    except ValueError as e:
        ap.error(str(e))
    if not args.form_splits or not set(args.form_splits) <= {"train", "heldout"}:
        ap.error(f"--form-splits {','.join(args.form_splits)!r}: expected train, heldout or both, comma-separated")
    if args.audio_only is None and args.table == "main":
        from .package import AUDIO_ONLY_WEIGHTS

        args.audio_only = str(AUDIO_ONLY_WEIGHTS) if AUDIO_ONLY_WEIGHTS.is_file() else None
    elif args.audio_only == "none":
        args.audio_only = None
    size = 128
    t0 = time.time()
    for label, path in (("--audio-only", args.audio_only), ("--weights", args.weights), ("--probe", args.probe),
                        ("--motion", args.motion)):
        if path is not None and not Path(path).is_file():
            print(f"instructavatar train quality: error: {label} {path}: file not found", file=sys.stderr)
            return 2
    try:
        if str(args.audio_only).endswith(".safetensors"):       # refused before any clip is generated
            from ..engine.modules.weights import WeightsError, read_metadata
            from .package import MOTION_FORMAT

            if read_metadata(args.audio_only).get("format") != MOTION_FORMAT:
                raise WeightsError(f"--audio-only {args.audio_only}: not a motion-generator file; write one with "
                                   "`instructavatar train package --motion-only RUN/state.pt`")
        clips = eval_clips(args.clips, args.seed)
        ev = _evaluator()
        probe = _probe(args.probe)
        text, data = TABLES[args.table](args, clips, ev, size, probe)
    except (FileNotFoundError, ValueError, RuntimeError) as e:        # missing checkpoints, wrong files
        print(f"instructavatar train quality: error: {e}", file=sys.stderr)
        return 2
    print(text)
    kinds = {k: sum(c.spec.kind == k for c in clips) for k in ("talk", "motion", "talk_neutral")}
    print(f"\n{len(clips)} held-out clips (seed {args.seed}: {kinds}); {time.time() - t0:.0f} s", file=sys.stderr)
    if args.summary_json:
        small = {k: ({**{kk: vv for kk, vv in v.items() if kk != "clips"},
                      "au_f1_per_clip": [c.get("au_f1") for c in v.get("clips", [])]} if isinstance(v, dict) else v)
                 for k, v in data.items()}
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps({"table": text, "clips": len(clips), "kinds": kinds,
                                                       "command": "instructavatar train quality " + " ".join(
                                                           argv if argv is not None else sys.argv[1:]),
                                                       "data": small}, indent=1, default=str))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"table": text, "clips": len(clips), "kinds": kinds,
                                               "args": vars(args), "data": data}, indent=1,
                                              default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
