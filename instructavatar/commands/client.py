"""`instructavatar client`: stream audio to a running server, save or show the frames it sends back.

    instructavatar client --audio speech.wav --instruction "talk happily" --out out.mp4
    instructavatar client --mic --instruction "smile" --virtual-camera          # live, as a webcam

`--out` writes the frames received with the sent audio muxed; `--mic` captures the microphone through pyaudio
(extra `audio`; needs PortAudio: `apt-get install portaudio19-dev`); `--virtual-camera` shows the frames on a
virtual webcam through pyvirtualcam (extra `virtual-camera`; needs v4l2loopback on Linux or OBS elsewhere).
"""

from __future__ import annotations

import sys
import threading
import time


def register(sub) -> None:
    p = sub.add_parser("client", help="stream audio to `instructavatar serve`; save frames or show a virtual camera",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="audio file to send (any format the engine reads)")
    src.add_argument("--mic", action="store_true", help="live microphone (pyaudio)")
    p.add_argument("--image", default=None, help="portrait (default: the bundled demo portrait)")
    p.add_argument("--instruction", default=None)
    p.add_argument("--out", default=None, help="video file for the frames received (audio muxed)")
    p.add_argument("--virtual-camera", action="store_true", help="show the frames on a virtual webcam")
    p.add_argument("--seconds", type=float, default=None, help="--mic: stop after this long (default: Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, help="--audio: send at this x real time (default 1)")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per chunk (server default if absent)")
    p.add_argument("--token", default=None)
    p.set_defaults(func=cmd_client)


def _virtual_camera(width: int, height: int, fps: int):
    try:
        import pyvirtualcam
    except ImportError:
        from ..cli import InputError

        raise InputError("--virtual-camera needs pyvirtualcam: pip install 'instructavatar[virtual-camera]' "
                         "(and v4l2loopback on Linux)") from None
    try:
        return pyvirtualcam.Camera(width=width, height=height, fps=fps)
    except RuntimeError as e:
        from ..cli import InputError

        raise InputError(f"no virtual camera device: {' '.join(str(e).split())}") from None


def _mic_frames(rate: int, seconds: float | None):
    try:
        import pyaudio
    except ImportError:
        from ..cli import InputError

        raise InputError("--mic needs pyaudio: pip install 'instructavatar[audio]' (PortAudio first: "
                         "apt-get install portaudio19-dev)") from None
    import numpy as np

    pa = pyaudio.PyAudio()
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, input=True, frames_per_buffer=rate // 50)
    except OSError as e:
        pa.terminate()
        from ..cli import InputError

        raise InputError(f"cannot open the microphone: {e}") from None
    t0 = time.monotonic()
    try:
        while seconds is None or time.monotonic() - t0 < seconds:
            data = stream.read(rate // 50, exception_on_overflow=False)
            yield np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    finally:
        stream.close()
        pa.terminate()


def cmd_client(args) -> int:
    import numpy as np

    from ..cli import InputError, check_output
    from ..engine.loader import ASSETS
    from ..server.client import AvatarClient, ServerError

    portrait = args.image or (ASSETS / "demo_portrait.png")
    out = check_output(args.out) if args.out else None
    if args.audio is not None:
        from ..engine.media.audio_io import load_audio

        audio, rate = load_audio(args.audio, 16000), 16000
    else:
        audio, rate = None, 16000
    try:
        client = AvatarClient(args.url)
    except Exception as e:                                               # refused, bad URL, handshake
        raise InputError(f"cannot connect to {args.url}: {' '.join(str(e).split())}") from None
    frames, sent = [], []
    with client as c:
        try:
            ready = c.start(portrait, instruction=args.instruction, audio_rate=rate, output="jpeg",
                            chunk_frames=args.chunk_frames, token=args.token)
        except ServerError as e:
            raise InputError(f"server refused the session: {e}") from None
        print(f"session {ready['session_id']}: {ready['model']} on {ready['backend']}, {ready['fps']} fps, "
              f"chunk {ready['chunk_frames']} frames", file=sys.stderr)
        cam = _virtual_camera(ready["width"], ready["height"], ready["fps"]) if args.virtual_camera else None

        def receive():
            for f in c.frames():
                rgb = f.rgb()
                if out is not None:
                    frames.append(rgb)
                if cam is not None:
                    cam.send(rgb)
        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        try:
            if audio is not None:
                c.stream_audio(audio, speed=args.speed or None)
                sent.append(audio)
            else:
                for piece in _mic_frames(rate, args.seconds):
                    c.send_audio(piece)
                    sent.append(piece)
        except KeyboardInterrupt:
            pass
        c.end()
        reader.join()
        end = c.end_event or {}
    if cam is not None:
        cam.close()
    print(f"received {end.get('frames_sent', len(frames))} frames ({end.get('frames_dropped', 0)} dropped)",
          file=sys.stderr)
    if out is not None:
        if not frames:
            raise InputError("the server sent no frames; nothing written")
        from ..engine.media.video_io import write_video

        write_video(out, np.stack(frames), fps=ready["fps"], audio=np.concatenate(sent) if sent else None,
                    sample_rate=rate)
        print(f"wrote {out}", file=sys.stderr)
    return 0
