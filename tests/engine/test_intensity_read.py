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
