"""`instructavatar serve`: the streaming websocket server (protocol v1, docs/protocol.md; server/).

    instructavatar serve --config demo --backend auto --host 127.0.0.1 --port 8765

Loopback by default; `--host 0.0.0.0` exposes it (then set `--token` and `--allowed-origin`).
"""

from __future__ import annotations

import os
import sys

from ..engine.backend import PRECISION_HELP, PRECISIONS  # numpy only: keeps the parser import-light
from ..server.limits import SERVE_DEFAULT_CHUNK_FRAMES  # a dataclass module: keeps the parser import-light


def register(sub) -> None:
    p = sub.add_parser("serve", help="streaming websocket server: audio in, frames out, many sessions batched",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo", help="model config (default demo)")
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped demo checkpoint)")
    p.add_argument("--random-weights", action="store_true", help="untrained weights (plumbing tests only)")
    p.add_argument("--backend", default="auto", help="auto, torch or ort (default auto: the fastest installed)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the config's)")
    p.add_argument("--guidance", type=float, default=None, help="instruction guidance (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="compute threads of the model worker")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help=PRECISION_HELP)
    p.add_argument("--as-typed", action="store_true",
                   help="give the generator every instruction as typed: no restating of intensity said by an idiom, "
                        "a hedge or exclaiming (engine/instruction_reader.py)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--chunk-frames", type=int, default=SERVE_DEFAULT_CHUNK_FRAMES,
                   help="frames per chunk for sessions that ask for none (2..10; default 4 = 160 ms: chosen from "
                        "the measurements in benchmarks/RESULTS.md, 'Server')")
    p.add_argument("--max-sessions", type=int, default=8)
    p.add_argument("--max-message-mb", type=float, default=8.0, help="largest websocket message (1009 past it)")
    p.add_argument("--max-portrait-mb", type=float, default=4.0)
    p.add_argument("--max-audio-rate", type=float, default=4.0, help="audio at most this x real time per session")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without a message before a session ends")
    p.add_argument("--token", default=os.environ.get("INSTRUCTAVATAR_TOKEN"),
                   help="shared secret session.start must carry (default: $INSTRUCTAVATAR_TOKEN; none = open)")
    p.add_argument("--allowed-origin", action="append", default=None,
                   help="browser origin allowed to connect (repeatable; default: any)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from ..cli import UsageError

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.max_sessions < 1:
        raise UsageError(f"--max-sessions must be at least 1, got {args.max_sessions}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    from ..server.limits import ServerLimits

    try:
        limits = ServerLimits(max_sessions=args.max_sessions, max_message_bytes=int(args.max_message_mb * 2**20),
                              max_portrait_bytes=int(args.max_portrait_mb * 2**20), max_audio_rate=args.max_audio_rate,
                              idle_timeout_s=args.idle_timeout, token=args.token or None,
                              allowed_origins=tuple(args.allowed_origin) if args.allowed_origin else None,
                              default_chunk_frames=args.chunk_frames)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from ..engine.loader import load_pipeline
    from ..engine.pipeline import check_chunk_frames
    from ..server.app import run_server

    if args.chunk_frames is not None:
        from ..engine.config import get_config

        try:
            check_chunk_frames(get_config(args.config), args.chunk_frames)
        except ValueError as e:
            raise UsageError(f"--{e}".replace("--chunk_frames", "--chunk-frames")) from None
    pipeline = load_pipeline(args.config, weights=args.weights, random_weights=args.random_weights,
                             backend=args.backend, steps=args.steps, threads=args.threads, guidance=args.guidance,
                             precision=args.precision)
    if args.as_typed:
        pipeline.reader = None
    name = getattr(pipeline.backend, "name", "?")

    def announce(port: int) -> None:
        print(f"instructavatar serve: {args.config} on {name}, http://{args.host}:{port}/ (browser client), "
              f"ws://{args.host}:{port}/ws, /healthz, /metrics", file=sys.stderr, flush=True)
    run_server(pipeline, args.host, args.port, limits, model_name=args.config, announce=announce)
    return 0
