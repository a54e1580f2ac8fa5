"""The README's Usage section works as written (issue 22): where face.png comes from, the Python example
(generate, write_video, VideoWriter + iter_frames, push_audio at another rate) runs, on the numpy test backend."""

import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from instructavatar.engine.media.video_io import read_video

from .numpy_backend import numpy_pipeline

ROOT = Path(__file__).resolve().parents[2]


def usage_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Usage\n")
    return text[start:text.index("\n## ", start + 1)]


def test_usage_says_where_the_portrait_comes_from_and_how_to_pass_a_rate():
    usage = usage_section()
    assert "instructavatar/assets/demo_portrait.png" in usage
    assert (ROOT / "instructavatar" / "assets" / "demo_portrait.png").is_file()
    assert "write_video" in usage and "VideoWriter" in usage
    assert "sample_rate=" in usage and "16000" in usage


def test_usage_python_example_runs(tmp_path, monkeypatch):
    from instructavatar.engine import loader

    code = re.search(r"```python\n(.*?)```", usage_section(), re.S).group(1)
    pipe = numpy_pipeline(steps=1)
    monkeypatch.setattr(loader, "load_pipeline", lambda *a, **k: pipe)
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "instructavatar" / "assets" / "demo_portrait.png", "face.png")
    t = np.arange(16000) / 16000
    sf.write("speech.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    shown = []

    def microphone_chunks():
        tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(48000) / 48000)).astype(np.float32)
        yield from (tone[i:i + 4800] for i in range(0, len(tone), 4800))

    namespace = {"microphone_chunks": microphone_chunks, "show": shown.append, "user_typed_something": True,
                 "show_all": lambda frames: shown.extend(frames), "print": lambda *a: None}
    exec(compile(code, "README.md:Usage", "exec"), namespace)
    assert len(read_video(tmp_path / "out.mp4")[0]) == 25
    assert len(read_video(tmp_path / "long.mp4")[0]) == 25
    assert len(shown) == 25                                   # one second at 48 kHz -> 25 frames
