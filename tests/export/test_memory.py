"""Device memory per session from the export specs (export/memory.py): pinned against the shapes by hand."""

import pytest

from instructavatar.engine.config import get_config
from instructavatar.export.memory import estimate, main


def test_paper_instruction_tensors_and_frames_by_hand():
    cfg = get_config("paper")
    est = estimate(cfg, "fp16")
    L, D, N = cfg.denoiser.conformer.layers, cfg.denoiser.conformer.d_model, cfg.text.context
    inst = 2 * L * (D + 2 * N * D) * 4                       # guided: instructed + default row, fp32
    assert est.parts["session:instruction tensors"] == pytest.approx(inst / 2**20)
    S, C = cfg.media.image_size, cfg.stream.chunk_frames
    assert est.parts["session:decoder I/O (one chunk)"] > C * 3 * S * S * 4 / 2**20
    assert est.total_mib(4) - est.total_mib(1) == pytest.approx(3 * est.per_session_mib)
    fp32 = estimate(cfg, "fp32")
    assert fp32.weights_mib > 1.5 * est.weights_mib and fp32.per_session_mib == est.per_session_mib
    assert estimate(cfg, "fp16", guided=False).per_session_mib < est.per_session_mib
    with pytest.raises(ValueError, match="precision must be one of"):
        estimate(cfg, "fp4")


def test_prints_a_table(capsys):
    assert main(["--config", "demo", "--sessions", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "per session" in out and "3 session(s)" in out
