"""`instructavatar bench`: the quick bench runs end to end and writes a valid report and plots (no timing
assertions); the report schema check, --compare, the fits and the timing proxy on their own; bad input."""

import copy
import json
import math

import numpy as np
import pytest

from instructavatar.benchmarks.measure import SCHEMA, fit_linear, fit_power, stat
from instructavatar.benchmarks.report import compare, flatten, validate
from instructavatar.cli import main


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--quick", "--backend", "torch", "--threads", "1", "--quiet", "--no-server", "--out", str(out)])
    return rc, out


def test_quick_bench_writes_a_valid_report(quick, capsys):
    rc, out = quick
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    assert validate(report) == []
    assert report["schema"] == SCHEMA and report["errors"] == []
    m = report["machine"]
    assert m["cores"] >= 1 and m["threads"] == 1 and m["libraries"]["numpy"] and m["cpu"]
    assert report["options"]["plan"]["name"] == "quick" and report["matmul_peak"]["peak_gflops"] > 0
    torch = report["backends"]["torch"]
    assert torch["weights"] == "shipped"
    comps = torch["components"]
    for name in ("encode_appearance", "encode_keyframe", "encode_text", "condition", "encode_audio", "denoise",
                 "decode", "chunk"):
        assert comps[name]["ms_per_call"]["median"] > 0 and comps[name]["gflops"] > 0, name
    for name in ("encode_audio", "denoise", "decode", "chunk"):
        assert comps[name]["ms_per_frame"]["median"] > 0, name
    p = torch["pipeline"]
    s = p["stream"]
    assert s["frames"] == 30 and math.isfinite(s["rtf"]["median"]) and s["rtf"]["median"] > 0
    assert len(s["chunk_latencies_ms"]) == 2 * 3                       # 2 repeats x 3 chunks of 1.2 s
    assert {"encode_audio", "denoise", "decode", "ddim_step", "other"} <= s["stage_ms_per_frame"].keys()
    assert p["session_start"]["text_encoding_ms"]["n"] >= 1 and p["session_start"]["conditioning_ms"]["n"] >= 1
    assert set(p["steps_sweep"]) == {"1", "8"} and set(p["chunk_sweep"]) == {"5", "10"}
    sc = torch["scaling"]
    assert set(sc["window"]["points"]) == {"10", "20", "40"}
    assert set(sc["sessions"]["points"]) == {"1", "2"} and set(sc["resolution"]["points"]) == {"64", "96"}
    for fits in (sc["window"]["fits"]["denoise_ms"], sc["sessions"]["fits"],
                 sc["resolution"]["fits"]["decode_ms_per_frame"]):
        assert math.isfinite(fits["linear"]["slope"]) and math.isfinite(fits["power"]["exponent"])
    eff = torch["efficiency"]["components"]
    assert eff["denoise"]["shape"].startswith("8 rows") and "40 frames" in eff["decode"]["shape"]
    assert all(0 < v["fraction_of_peak"] and math.isfinite(v["fraction_of_peak"]) for v in eff.values())
    pytest.importorskip("matplotlib")
    for name in ("bench_latency", "bench_stages", "bench_steps", "bench_sessions"):
        assert (out / f"{name}.png").stat().st_size > 5000, name


def test_compare_prints_ratios(quick, tmp_path, capsys):
    _, out = quick
    report = json.loads((out / "bench.json").read_text())
    slower = copy.deepcopy(report)
    d = slower["backends"]["torch"]["components"]["decode"]["ms_per_frame"]
    for k in ("min", "median", "max", "mean"):
        d[k] *= 2
    (tmp_path / "b.json").write_text(json.dumps(slower))
    capsys.readouterr()
    assert main(["bench", "--compare", str(out / "bench.json"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("backends.torch.components.decode.ms_per_frame "))
    assert line.split()[-1] == "2.000"
    assert next(x for x in text.splitlines() if x.startswith("backends.torch.components.denoise.ms_per_call"))\
        .split()[-1] == "1.000"


def _tiny_report():
    return {"schema": SCHEMA, "errors": [], "matmul_peak": {"peak_gflops": 1.0},
            "options": {"config": "demo", "plan": {"name": "quick"}},
            "machine": {k: "x" for k in ("cpu", "cores", "gpu", "libraries", "threads", "git_commit", "date")},
            "backends": {"torch": {"components": {"decode": {"ms_per_call": stat([1.0, 2.0, 3.0])}},
                                   "pipeline": {}, "scaling": {}, "efficiency": {}}}}


def test_validate_names_what_is_wrong():
    good = _tiny_report()
    assert validate(good) == []
    assert flatten(good) == {"backends.torch.components.decode.ms_per_call": 2.0}
    bad = _tiny_report()
    bad["backends"]["torch"]["components"]["decode"]["ms_per_call"]["median"] = float("nan")
    assert "not finite" in validate(bad)[0]
    bad = _tiny_report()
    bad["backends"]["torch"]["components"]["decode"]["ms_per_call"]["min"] = 9.0
    assert "min <= median <= max" in validate(bad)[0]
    bad = _tiny_report()
    del bad["backends"]["torch"]["scaling"]
    assert validate(bad) == ["backends.torch.scaling missing"]
    assert validate({"schema": "other/1"})[0].startswith("missing key")
    bad = _tiny_report()
    bad["schema"] = "other/9"
    assert "expected" in validate(bad)[0]
    assert "A = a" in compare(good, good, "a", "b")


def test_fits_recover_known_growth():
    x = [1, 2, 4, 8]
    lin = fit_linear(x, [3 * v + 5 for v in x])
    assert lin["slope"] == pytest.approx(3) and lin["intercept"] == pytest.approx(5) and lin["r2"] == pytest.approx(1)
    assert fit_power(x, [0.5 * v ** 2 for v in x])["exponent"] == pytest.approx(2)
    assert math.isnan(fit_power([1], [1])["exponent"])


def test_timed_backend_times_calls_and_passes_through():
    from instructavatar.benchmarks.timed_backend import CallLog, TimedBackend, timed_sampler
    from instructavatar.engine.config import get_config
    from instructavatar.engine.ddim import DDIMSampler

    class Fake:
        name = "fake"
        extra = 7

        def decode(self, motion, appearance):
            return motion + appearance

    log = CallLog()
    tb = TimedBackend(Fake(), log)
    assert tb.decode(1, 2) == 3 and tb.extra == 7 and tb.name == "fake"
    assert len(log.ms["decode"]) == 1 and log.ms["decode"][0] >= 0
    assert not hasattr(tb, "denoise_chunk")                 # optional methods stay absent when the inner lacks them
    sampler = DDIMSampler(get_config("demo").diffusion)
    sampler.set_timesteps(2)
    x = np.zeros((1, 2, 3), np.float32)
    with timed_sampler(sampler, log):
        sampler.step(x, 0, x)
    assert len(log.ms["ddim_step"]) == 1 and "step" not in vars(sampler)


def test_recorded_quality_table_is_read():
    from instructavatar.benchmarks.plots import README, recorded_steps_quality

    if not README.is_file():
        pytest.skip("no README next to the package (installed copy)")
    rows = recorded_steps_quality()
    assert {1, 8, 50} <= rows.keys() and all(0 < r["AU_F1"] <= 1 for r in rows.values())


@pytest.mark.parametrize("argv, code, words", [
    (["bench", "--backend", "nope"], 2, "unknown backend"),
    (["bench", "--config", "huge"], 2, "unknown config"),
    (["bench", "--threads", "0"], 2, "--threads"),
    (["bench", "--compare", "missing_a.json", "missing_b.json"], 1, "not found"),
])
def test_bad_input_is_one_line(argv, code, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and len(err.splitlines()) == 1


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "b.json").write_text("not json")
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    err = capsys.readouterr().err
    assert "is not a bench report" in err and len(err.strip().splitlines()) == 1
