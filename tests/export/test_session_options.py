"""The ORT backend's session options: every component session is created with them, and its pool threads do not
spin (one session per component: a pool spinning after its run holds the cores the next component needs; on this
2-core VM that cost the demo 1.5x at two threads, benchmarks/RESULTS.md)."""

from __future__ import annotations

from instructavatar.engine.config import get_config
from instructavatar.engine.loader import DEMO_WEIGHTS
from instructavatar.engine.ort_backend import OrtBackend, session_options

SPIN = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def test_session_options_do_not_spin_unless_asked():
    assert all(session_options(2).get_session_config_entry(k) == "0" for k in SPIN)
    assert all(session_options(2, spin=True).get_session_config_entry(k) == "1" for k in SPIN)
    assert session_options(3).intra_op_num_threads == 3 and session_options(None).intra_op_num_threads == 0


def test_every_component_session_runs_with_them(demo_export):
    be = OrtBackend(demo_export, get_config("demo"), weights=DEMO_WEIGHTS, threads=2)
    assert set(be.sessions) >= {"denoiser", "decoder", "audio_encoder", "text_encoder"}
    for name, sess in be.sessions.items():
        opts = sess.get_session_options()
        assert opts.intra_op_num_threads == 2, name
        assert all(opts.get_session_config_entry(k) == "0" for k in SPIN), name
