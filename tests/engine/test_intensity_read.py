"""The intensity level reported to users (engine/intensity_read.py): the generator's intensity head on the
motion a session emitted, pooled over frames; no level from a backend without the head."""

from __future__ import annotations

import numpy as np
import pytest

from instructavatar.engine import intensity_read as R

torch = pytest.importorskip("torch")


class _Backend:
    def __init__(self, head):
        self.model = torch.nn.Module()
        self.model.denoiser = torch.nn.Module()
        self.model.denoiser.intensity_head = head


def test_level_is_the_heads_argmax_on_the_frame_mean():
    head = torch.nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 4))                # logit k = mean of latent channel k
    motion = np.zeros((10, 4), np.float32)
    motion[:5, 2] = 4.0                                   # channel 2 is largest on average (2.0), not per frame
    motion[5:, 1] = 3.0
    r = R.read_motion_level(_Backend(head), motion)
    assert r.level == 3 and abs(sum(r.probs) - 1) < 1e-6 and r.confidence == max(r.probs)
    assert r.describe("angry").startswith("angry, level 3 (strong; p ")
    motion[5:, 1] = 5.0                                   # now channel 1 (2.5 on average) wins
    assert R.read_motion_level(_Backend(head), motion).level == 2


def test_no_head_no_level():
    class Plain:                                          # e.g. ONNX Runtime: training heads not exported
        pass

    assert not R.has_intensity_head(Plain())
    assert R.read_motion_level(Plain(), np.zeros((4, 4), np.float32)) is None
    assert R.read_instruction_level(type("P", (), {"backend": Plain()})(), None, "Look furious.") is None
    head = torch.nn.Linear(4, 3)
    assert R.read_motion_level(_Backend(head), np.zeros((0, 4), np.float32)) is None


def test_understanding_gets_the_level_for_emotions_only(monkeypatch):
    from instructavatar.engine.understanding import Understanding

    read = R.IntensityRead(level=2, probs=(0.2, 0.7, 0.1))
    monkeypatch.setattr(R, "read_instruction_level", lambda pipe, portrait, text, seconds, seed, weights: read)

    class Pipe:
        def __init__(self, label):
            self.label = label

        def understand(self, text):
            return Understanding(label=self.label, similarity=0.8, nearest="Talk very angrily.", second=None,
                                 second_similarity=None, unknown_fraction=0.0)

    u = R.understand_with_level(Pipe("angry"), None, "Look livid.")
    assert u.intensity == read
    assert u.describe().startswith("understood as angry, level 2 (moderate; p 0.70) (similarity 0.80")
    assert R.understand_with_level(Pipe("nod"), None, "Show that you agree.").intensity is None
    assert R.understand_with_level(Pipe("neutral"), None, "Talk calmly.").intensity is None


def test_the_numpy_head_from_the_checkpoint_equals_the_torch_head():
    """Backends without the head (ONNX Runtime) read it from the checkpoint file: same level and probabilities."""
    from instructavatar.engine.config import get_config
    from instructavatar.engine.loader import DEMO_WEIGHTS
    from instructavatar.engine.modules.model import InstructAvatar
    from instructavatar.engine.modules.weights import load_checkpoint

    model = InstructAvatar(get_config("demo"), pretrained_text=False)
    load_checkpoint(model, DEMO_WEIGHTS)
    head = model.denoiser.intensity_head.float()
    rng = np.random.default_rng(0)
    for _ in range(5):
        motion = rng.normal(0, 1, (12, head[0].in_features)).astype(np.float32)
        a = R.read_motion_level(_Backend(head), motion)
        b = R.read_motion_level(object(), motion, weights=DEMO_WEIGHTS)
        assert a.level == b.level and np.allclose(a.probs, b.probs, atol=2e-3)
    assert R.read_motion_level(object(), motion) is None              # no head anywhere: no level
