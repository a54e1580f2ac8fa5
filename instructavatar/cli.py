"""`instructavatar`: render a talking avatar from a portrait, speech and an instruction.

    instructavatar render --image face.png --audio speech.wav --instruction "talk happily" --out out.mp4
    instructavatar render --image face.png --seconds 4 --instruction "nod slowly" --out nod.mp4
    instructavatar info --config paper          # parameters and GFLOP per component
    instructavatar demo --out demo_out          # the bundled portrait and sentence under four instructions

Bad input never shows a traceback: it prints one line `error: ...` on stderr and exits with 2 (usage:
arguments, config, backend, steps) or 1 (input: portrait, audio, instruction, weights, output path).
Only the engine's own input exceptions are caught; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from .engine.backend import PRECISION_HELP, PRECISIONS

EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad argument combination or value: exit code 2."""


class InputError(Exception):
    """A bad input file or output location found by the CLI itself: exit code 1."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line `error: ...` (exit 2) instead of usage + message."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------- checks
def check_steps(cfg, steps: int | None, eta: float | None) -> None:
    """Validate --steps / --eta with the sampler itself (its message names the allowed range).

    Checked here, before the model loads, because `Pipeline` treats steps=0 as "default" (`steps or ...`).
    """
    from .engine.ddim import DDIMSampler

    try:
        DDIMSampler(cfg.diffusion).set_timesteps(cfg.diffusion.sample_steps if steps is None else steps, eta)
    except ValueError as e:
        raise UsageError(_one_line(e)) from None


def check_guidance(guidance: float | None) -> None:
    """Validate --guidance with the pipeline's own check, before the model loads."""
    from .engine.pipeline import check_guidance as valid

    if guidance is not None:
        try:
            valid(guidance)
        except ValueError as e:
            raise UsageError(f"--{_one_line(e)}") from None


def check_output(path: str | os.PathLike) -> Path:
    """Make sure `path` can be written (creating its folder) before any compute is spent."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"output {out} is a directory; give a file name such as {out / 'out.mp4'}")
    parent = out.parent if str(out.parent) else Path(".")
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(f"cannot write {out}: {blocker} is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".instructavatar-", suffix=".probe"):
            pass
    except OSError as e:
        raise InputError(f"cannot write to output directory {parent}: {e.strerror or _one_line(e)}") from None
    return out


def _check_file(path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} is not a file: {p}")


# ------------------------------------------------------------------------------------------- render
def cmd_render(args) -> int:
    from .engine.backend import resolve_backend
    from .engine.config import get_config
    from .engine.media.audio_io import load_audio_original, model_audio, normalize_loudness
    from .engine.media.image_io import load_portrait
    from .engine.media.video_io import VideoFormatError, container_for
    from .engine.pipeline import DEFAULT_INSTRUCTION, frame_count

    # Everything that can be checked without the model is checked first (fast failure, no wasted load).
    cfg = get_config(args.config)
    resolve_backend(args.backend)
    check_steps(cfg, args.steps, args.eta)
    check_guidance(args.guidance)
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UsageError(f"--seconds must be a positive number, got {args.seconds:g}")
    if args.seconds is not None and args.seconds > cfg.max_audio_seconds:
        raise UsageError(f"--seconds {args.seconds:g} is over the limit of {cfg.max_audio_seconds:g} s")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    instruction = DEFAULT_INSTRUCTION if args.instruction is None else args.instruction
    if not instruction.strip():
        raise InputError("instruction is empty; describe the behaviour, e.g. --instruction \"talk happily\"")
    if args.weights:
        _check_file(args.weights, "weights file")
    if args.clip_weights:
        _check_file(args.clip_weights, "CLIP weights file")

    try:
        if not Path(args.out).is_dir():                            # (a folder is check_output's to report)
            container_for(args.out)                                # the container follows the extension
    except VideoFormatError as e:
        raise InputError(_one_line(e)) from None
    load_portrait(args.image, cfg.media.image_size)       # a bad portrait fails now, before the model loads
    rate, fps = cfg.media.sample_rate, cfg.media.fps
    audio = original = original_rate = None
    if args.audio is not None:
        original, original_rate = load_audio_original(args.audio, cfg.max_audio_seconds)   # muxed as it is
        audio = model_audio(original, original_rate, rate)                # mono, at 16 kHz, for the model
        n_samples = len(audio)
    else:
        n_samples = int(round(args.seconds * rate))
    out = check_output(args.out)
    if args.clip_weights and cfg.text.kind != "clip":
        _warn(f"--clip-weights is ignored: config {cfg.name!r} uses the {cfg.text.kind} text encoder")
    elif not args.clip_weights and cfg.text.kind == "clip" and not args.random_weights:
        _warn(f"config {cfg.name!r} uses the CLIP ViT-L/14 text encoder and no --clip-weights was given: "
              "the text encoder is random")

    from safetensors import SafetensorError

    from .engine.loader import load_pipeline
    try:
        from .engine.modules.text_encoder import WeightLoadError
    except ImportError:                     # torch absent: the ORT path reads no CLIP weights
        WeightLoadError = SafetensorError

    t0 = time.perf_counter()
    try:
        pipeline = load_pipeline(cfg, weights=args.weights, random_weights=args.random_weights,
                                 backend=args.backend, steps=args.steps, eta=args.eta, threads=args.threads,
                                 clip_weights=args.clip_weights, seed=args.seed, guidance=args.guidance,
                                 precision=args.precision, onnx_dir=args.export_dir)
    except (WeightLoadError, SafetensorError) as e:       # only the CLIP file is read outside WeightsError
        raise InputError(f"cannot load CLIP weights {args.clip_weights}: {_one_line(e)}") from None
    load_s = time.perf_counter() - t0
    if args.as_typed:
        pipeline.reader = None

    # Checked before rendering so the warning comes first (generate(warnings=...) reports it only after).
    if pipeline.tokenizer([instruction]).truncated[0]:
        _warn(f"instruction truncated to {pipeline.tokenizer.context} tokens (the text encoder's context)")
    from .engine.photo.mode import prepare_for_mode

    prepared, _ = prepare_for_mode(pipeline, args.image, args.mode, args.photo_size, say=_say, warn=_warn)
    for w in prepared.warnings:
        _warn(w)
    from .engine.intensity_read import understand_with_level
    from .engine.loader import default_weights

    # the nearest trained behaviour (demo config) and, for an emotion, the level the generator read (issue 28)
    understood = understand_with_level(pipeline, prepared, instruction,
                                       weights=None if args.random_weights else (args.weights or default_weights(cfg)))
    if understood is not None:
        _say(f"instruction {instruction!r}: {understood.describe()}")
        for w in understood.warnings:
            _warn(w)

    n_frames = frame_count(n_samples, pipeline.samples_per_frame)
    model_in = None if audio is None else normalize_loudness(audio)   # loudness only for the model
    from tqdm import tqdm

    bar = tqdm(total=n_frames, unit="frame", desc="render", file=sys.stderr, dynamic_ncols=True,
               disable=args.quiet)
    from .engine.render import render_to_file

    t1 = time.perf_counter()
    try:    # frames go to the file as each chunk completes; a stopped render keeps what was finished
        result = render_to_file(pipeline, out, prepared, audio=model_in,
                                seconds=None if audio is not None else n_samples / rate,
                                instruction=instruction, seed=args.seed, mux_audio=original, mux_rate=original_rate,
                                progress=bar.update, idle_blinks=not args.no_idle_blinks)
    except BaseException as e:
        bar.close()
        partial = getattr(e, "partial", None)
        if partial is not None and partial.frames:
            _warn(f"render stopped: {out} holds the first {partial.frames} of {n_frames} frames "
                  f"({partial.seconds:.2f} s), playable")
        elif partial is not None:
            _warn(f"render stopped before the first chunk finished: {out} was not written")
        if isinstance(e, OSError):
            raise InputError(f"cannot write {out}: {_one_line(e)}") from None
        raise
    bar.close()
    gen_s = time.perf_counter() - t1

    seconds = n_samples / rate
    summary = {
        "out": str(out), "frames": result.frames, "fps": fps,
        "size": cfg.media.image_size if prepared.decoder is None else prepared.decoder.frame_shape[0],
        "width": cfg.media.image_size if prepared.decoder is None else prepared.decoder.frame_shape[1],
        "audio_seconds": seconds, "video_seconds": result.seconds, "load_seconds": load_s,
        "generate_seconds": gen_s, "real_time_factor": gen_s / seconds,
        "steps": pipeline.sampler.num_steps, "stages": pipeline.timings.summary(),
    }
    print(_render_summary(summary, args.audio is not None))
    return 0


def _render_summary(s: dict, with_audio: bool) -> str:
    source = "audio" if with_audio else "motion only, no audio track"
    lines = [
        f"wrote {s['out']}: {s['frames']} frames at {s['fps']} fps, {s.get('width', s['size'])}x{s['size']} "
        f"({s['video_seconds']:.2f} s video, {s['audio_seconds']:.2f} s {source})",
        f"generation {s['generate_seconds']:.2f} s for {s['audio_seconds']:.2f} s: real-time factor "
        f"{s['real_time_factor']:.3f} (below 1 = faster than real time); {s['steps']} DDIM steps; "
        f"model load {s['load_seconds']:.2f} s",
        f"{'stage':<14}{'calls':>7}{'mean ms':>11}{'total ms':>12}",
    ]
    for name, v in s["stages"].items():
        lines.append(f"{name:<14}{v['count']:>7d}{v['mean_ms']:>11.1f}{v['total_ms']:>12.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- info
# Estimates computed from the authors' configuration, not measured (docs/paper_sizes.md says where each comes
# from). Keyed by our component names; "vae" = appearance + motion encoders + decoder.
PAPER_ESTIMATES = {
    "vae": {"params": 756e6, "what": "VAE (appearance + motion encoders + decoder) parameters"},
    "denoiser": {"params": 259e6, "what": "denoiser parameters"},
    "text_encoder": {"params": 123e6, "what": "CLIP ViT-L/14 text encoder parameters"},
    "vae.decoder": {"gflop": 5400.0, "what": "decoder GFLOP per 256x256 frame"},
    "denoiser.step": {"gflop": 0.4, "what": "denoiser GFLOP per frame per step"},
}
VAE_PARTS = ("vae.appearance_encoder", "vae.motion_encoder", "vae.decoder")


def model_info(config_name: str) -> dict:
    """Parameter counts, GFLOP and sizes of a configuration (meta device: no memory, no weights)."""
    from .engine.config import get_config

    cfg = get_config(config_name)
    from .engine.costs import component_costs, per_frame_gflop  # the committed table: no torch import

    costs, source = component_costs(cfg)
    by = {c.name: c for c in costs}
    steps = cfg.diffusion.sample_steps
    vae = sum(by[n].params for n in VAE_PARTS)
    v = cfg.vae
    overlap = cfg.stream.window_frames / cfg.stream.chunk_frames
    info = {
        "config": cfg.name,
        "costs_source": source,
        "components": [{"name": c.name, "params": c.params, "gflop": c.gflop, "unit": c.unit} for c in costs],
        "totals": {"params": sum(c.params for c in costs), "vae_params": vae,
                   "trainable_params": sum(c.params for c in costs if c.name != "text_encoder")},
        "default_steps": steps,
        "per_frame_gflop": per_frame_gflop(costs, steps),
        # The pipeline runs the audio encoder and the denoiser over the whole window (prefix + chunk) for
        # each chunk of new frames, so in streaming those two terms cost window/chunk times more per frame.
        "per_frame_gflop_windowed": per_frame_gflop(costs, steps, overlap),
        "sizes": {
            "image": cfg.media.image_size, "fps": cfg.media.fps, "sample_rate": cfg.media.sample_rate,
            "samples_per_frame": cfg.media.samples_per_frame,
            "motion_latent": [v.motion_channels, v.motion_side, v.motion_side], "motion_dim": cfg.motion_dim,
            "appearance_latent": [v.app_channels, cfg.media.image_size // v.app_downsample,
                                  cfg.media.image_size // v.app_downsample],
            "appearance_state": [v.appearance_channels, cfg.media.image_size // v.app_downsample,
                                 cfg.media.image_size // v.app_downsample], "decoder_warp": v.warp,
            "window_frames": cfg.stream.window_frames, "chunk_frames": cfg.stream.chunk_frames,
            "prefix_frames": cfg.stream.prefix_frames, "text_encoder": cfg.text.kind,
            "text_context": cfg.text.context, "audio_frontend": cfg.audio.frontend,
            "max_audio_seconds": cfg.max_audio_seconds,
        },
    }
    if cfg.name == "paper":
        ours = {"vae": vae, "denoiser": by["denoiser"].params, "text_encoder": by["text_encoder"].params,
                "vae.decoder": by["vae.decoder"].gflop, "denoiser.step": by["denoiser"].gflop}
        info["estimates"] = [
            {"name": k, "what": e["what"], "ours": ours[k], "estimate": e.get("params", e.get("gflop")),
             "ratio": ours[k] / e.get("params", e.get("gflop"))}
            for k, e in PAPER_ESTIMATES.items()]
    return info


def _info_table(info: dict) -> str:
    lines = [f"config {info['config']}",
             f"{'component':<24}{'params (M)':>12}{'GFLOP':>14}  per"]
    for c in info["components"]:
        lines.append(f"{c['name']:<24}{c['params'] / 1e6:>12.2f}{c['gflop']:>14.4f}  {c['unit']}")
    t = info["totals"]
    lines += [
        f"{'total':<24}{t['params'] / 1e6:>12.2f}",
        f"{'  VAE (app+motion+dec)':<24}{t['vae_params'] / 1e6:>12.2f}",
        f"{'  trainable (no text)':<24}{t['trainable_params'] / 1e6:>12.2f}",
        f"steady state: {info['per_frame_gflop']:.3f} GFLOP per output frame at {info['default_steps']} DDIM "
        "steps (decoder + audio + denoiser x steps)",
        f"  {info['per_frame_gflop_windowed']:.3f} GFLOP counting the window overlap (audio and denoiser run "
        f"over {info['sizes']['window_frames']} frames per {info['sizes']['chunk_frames']} new ones)",
    ]
    s = info["sizes"]
    lines += [
        "sizes:",
        f"  image {s['image']}x{s['image']} RGB, {s['fps']} fps, audio {s['sample_rate']} Hz "
        f"({s['samples_per_frame']} samples per frame), at most {s['max_audio_seconds']:g} s",
        f"  motion latent {'x'.join(map(str, s['motion_latent']))} = {s['motion_dim']} per frame; appearance "
        f"latent {'x'.join(map(str, s['appearance_latent']))} (cached portrait state "
        f"{'x'.join(map(str, s['appearance_state']))}{', with the warp' if s['decoder_warp'] else ''})",
        f"  window {s['window_frames']} frames = prefix {s['prefix_frames']} + chunk {s['chunk_frames']}",
        f"  text encoder {s['text_encoder']} ({s['text_context']} tokens); audio front end {s['audio_frontend']}",
    ]
    if "estimates" in info:
        lines += ["paper architecture (estimates from the authors' configuration: docs/paper_sizes.md) vs this "
                  "implementation:",
                  f"  {'quantity':<56}{'ours':>12}{'estimate':>12}{'ratio':>8}"]
        for e in info["estimates"]:
            if e["name"] in PAPER_ESTIMATES and "params" in PAPER_ESTIMATES[e["name"]]:
                ours, est = f"{e['ours'] / 1e6:.1f}M", f"{e['estimate'] / 1e6:.0f}M"
            else:
                ours, est = f"{e['ours']:.4g}", f"{e['estimate']:.4g}"
            lines.append(f"  {e['what']:<56}{ours:>12}{est:>12}{e['ratio']:>8.3f}")
    return "\n".join(lines)


def cmd_info(args) -> int:
    info = model_info(args.config)
    print(json.dumps(info, indent=2) if args.json else _info_table(info))
    return 0


# --------------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from .demo import run_demo
    from .engine.config import get_config

    check_steps(get_config("demo"), args.steps, None)
    check_guidance(args.guidance)
    check_output(Path(args.out) / "demo.mp4")
    paths = run_demo(args.out, steps=args.steps, random_weights=True if args.random_weights else None,
                     progress=not args.quiet, threads=args.threads, seed=args.seed, guidance=args.guidance,
                     mode=args.mode)
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


# ------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="instructavatar", description="Instruction-following talking avatars (InstructAvatar).")
    p.add_argument("--version", action="version", version=f"instructavatar {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("render", help="portrait + speech (or seconds of motion) + instruction -> mp4",
                       description="Render an mp4 (H.264 + AAC, 25 fps) of the portrait speaking the audio "
                                   "under the instruction.")
    r.add_argument("--image", required=True, help="portrait image (any PIL-readable file; centre-cropped)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="speech (wav, flac, mp3, m4a, ...; resampled to 16 kHz mono)")
    src.add_argument("--seconds", type=float, help="motion only: this many seconds, no audio")
    r.add_argument("--instruction", help='what to do, e.g. "talk happily" (default: a neutral expression)')
    r.add_argument("--out", required=True, help="output video: .mp4, .mov, .mkv, .avi or .webm (the extension "
                                                "picks the container)")
    _model_args(r)
    r.add_argument("--mode", default="auto", choices=("auto", "photo", "world"),
                   help="photo: animate the photograph itself (photo mode); world: the model's own decoder "
                        "(repaints the face in the synthetic world's style); auto (default): photo for "
                        "photographs, world for faces of the world")
    r.add_argument("--photo-size", default="512", choices=("256", "512", "full"),
                   help="photo mode's output: a 256 or 512 px crop around the face, or the full photo")
    r.add_argument("--no-idle-blinks", action="store_true",
                   help="the engine schedules no blinks (the avatar blinks only when the instruction says so)")
    r.add_argument("--eta", type=float, default=None, help="DDIM eta in [0, 1] (default: the config's, 0)")
    r.add_argument("--config", default="demo", help="model configuration: demo or paper (default demo)")
    r.add_argument("--weights", help="checkpoint (.safetensors); default: the shipped demo checkpoint")
    r.add_argument("--backend", default="auto",
                   help="ort (ONNX Runtime, torch-free), torch, torch-cuda (CUDA graphs), trt (TensorRT), or auto: "
                        "the fastest present (default auto; docs/gpu.md)")
    r.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    r.add_argument("--as-typed", action="store_true",
                   help="give the generator the instruction as typed: no restating of intensity said by an idiom, "
                        "a hedge or exclaiming (engine/instruction_reader.py)")
    r.add_argument("--export-dir", default=None,
                   help="ONNX export folder for --backend ort, with TensorRT engines in its trt/ for --backend trt")
    r.add_argument("--clip-weights", help="CLIP ViT-L/14 text weights for --config paper")
    r.set_defaults(func=cmd_render)

    i = sub.add_parser("info", help="parameters, GFLOP and sizes of a configuration")
    i.add_argument("--config", default="demo", help="demo or paper (default demo)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="the bundled portrait and sentence under four instructions",
                       description="Writes DIR/demo.mp4 (the four clips side by side, 2x2, one audio track) "
                                   "and DIR/demo_grid.png (rows = instructions, columns = six fixed times).")
    d.add_argument("--out", default="demo_out", help="output folder (default ./demo_out)")
    d.add_argument("--mode", default="auto", choices=("auto", "photo", "world"),
                   help="world: the world face only; photo: a real photograph (photo mode) only; auto (default): "
                        "both, the photograph beside the world face (photo mode needs the photo extras)")
    _model_args(d)
    d.set_defaults(func=cmd_demo)

    import importlib

    from .commands import COMMANDS

    for name in COMMANDS:                              # export, serve, client, bench, ...: one module each
        importlib.import_module(f".commands.{name}", __package__).register(sub)

    from .training.cli import STEPS as TRAIN_STEPS  # a plain dict; importing it loads no torch

    t = sub.add_parser("train", add_help=False, help="training steps: " + ", ".join(TRAIN_STEPS),
                       description="instructavatar train {" + ",".join(TRAIN_STEPS) + "} [options]")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from .training.cli import main as train_main

    return train_main(args.rest)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the config's, 8)")
    p.add_argument("--guidance", type=float, default=None,
                   help="instruction guidance scale: >1 strengthens what the instruction asks for, 1 = off "
                        "(default: the config's)")
    p.add_argument("--random-weights", action="store_true",
                   help="run untrained (random) weights: for testing the plumbing only")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    from .engine.backend import BackendError
    from .engine.config import ConfigError
    from .engine.loader import MissingWeightsError
    from .engine.media.audio_io import AudioInputError
    from .engine.media.image_io import ImageInputError
    from .engine.onnx_manifest import ExportMismatchError
    from .engine.photo.analysis import PhotoError
    from .engine.tokenizer import TextInputError

    usage_errors = (UsageError, ConfigError, BackendError)
    input_errors = (InputError, ImageInputError, AudioInputError, TextInputError, MissingWeightsError,
                    ExportMismatchError, PhotoError)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except usage_errors as e:
        return _fail(e, EXIT_USAGE)
    except (*input_errors, _weights_error()) as e:
        return _fail(e, EXIT_INPUT)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:                           # `instructavatar info | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INPUT


class _NeverRaised(Exception):
    pass


def _weights_error() -> type[Exception]:
    """`WeightsError` if its module (which imports torch) was loaded; nothing else can have raised it."""
    mod = sys.modules.get("instructavatar.engine.modules.weights")
    return mod.WeightsError if mod is not None else _NeverRaised


def _fail(e: BaseException, code: int) -> int:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
