"""Render to a file as frames come: each finished chunk goes straight to the video writer.

`render_to_file` drives `Pipeline.iter_frames` into a `VideoWriter` (engine/media/video_io.py), so memory
holds the input audio and one chunk of frames, not the whole video, however long the input. If the render
stops early (Ctrl-C, an error), the writer is closed on the way out: the file plays up to the last finished
chunk, its sound ends with its last frame, and the exception carries on with `exc.partial` (a RenderResult)
attached so the caller can say what was kept. Bad input is refused before the output file is touched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .media.video_io import VideoWriter


@dataclass(frozen=True)
class RenderResult:
    path: Path
    frames: int                 # frames in the file
    fps: int
    complete: bool              # False: the render stopped early and the file holds what was finished

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def render_to_file(pipeline, out, portrait, audio: np.ndarray | None = None, seconds: float | None = None,
                   instruction: str | None = None, seed: int = 0, sample_rate: int | None = None,
                   mux_audio: np.ndarray | None = None, mux_rate: int | None = None,
                   progress: Callable[[int], None] | None = None, warnings: list[str] | None = None,
                   idle_blinks: bool = True) -> RenderResult:
    """Frames for `audio` (at `sample_rate`) or `seconds` of motion, written to `out` chunk by chunk.

    `mux_audio` / `mux_rate`: the sound track to mux (the user's original, any rate, 1 or 2 channels kept);
    default: `audio` itself at `sample_rate`. On an exception the partial file is closed and kept, and the
    exception is re-raised with `.partial` = the RenderResult of what was written.
    """
    fps = pipeline.cfg.media.fps
    if mux_audio is None and audio is not None:
        mux_audio, mux_rate = audio, sample_rate or pipeline.cfg.media.sample_rate
    frames = pipeline.iter_frames(portrait, audio=audio, seconds=seconds, instruction=instruction, seed=seed,
                                  warnings=warnings, idle_blinks=idle_blinks, sample_rate=sample_rate)
    first = next(frames, None)            # input checks run here, before the output file is touched
    writer = VideoWriter(out, fps, mux_audio, mux_rate or pipeline.cfg.media.sample_rate)
    try:
        with writer:
            for chunk in itertools.chain([first] if first is not None else [], frames):
                writer.write(chunk)
                if progress is not None:
                    progress(len(chunk))
    except BaseException as e:
        e.partial = RenderResult(writer.path, writer.frames_written, fps, complete=False)
        raise
    return RenderResult(writer.path, writer.frames_written, fps, complete=True)
