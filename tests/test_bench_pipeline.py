"""The pipeline benchmark runs end to end on the demo config and writes its JSON (no timing assertions)."""

import json

from instructavatar.benchmarks.bench_pipeline import main


def test_bench_pipeline_demo_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["--configs", "demo", "--steps", "1", "--seconds", "0.8", "--repeats", "1", "--threads", "1",
                   "--guidance", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["configs"].keys() == {"demo"} == result["configs"].keys()
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"]
    demo = data["configs"]["demo"]
    stages = demo["stages"]["stages_ms_per_call"]
    for name in ("portrait", "tokenizer", "text_encoder", "condition", "text", "audio", "denoise_step", "decode"):
        assert stages[name]["median"] > 0 and stages[name]["p90"] >= stages[name]["median"], name
    per_frame = demo["stages"]["per_frame_ms"]
    assert all(per_frame[k] > 0 for k in ("audio", "denoise", "denoise_step", "decode", "total"))
    assert abs(sum(demo["stages"]["share"].values()) - 1) < 1e-6
    assert all(v > 0 for v in demo["gflop_per_call"].values())
    stream = demo["stream"]
    assert stream["frames"] == 20 and stream["audio_seconds"] == 0.8
    assert stream["rtf"]["median"] > 0 and stream["first_frame_latency_ms"]["median"] > 0
    assert stream["first_frame_latency_with_fill_ms"] > stream["chunk_ms"] == 400
    assert set(stream["stage_ms_per_frame"]) == {"audio", "denoise_step", "decode"}
    guided = demo["guidance_streams"]["2"]
    assert guided["frames"] == 20 and guided["rtf"]["median"] > 0
    text = capsys.readouterr().out
    for word in ("audio encoder", "denoiser", "decoder", "RTF", "first-frame latency", "GFLOP/s",
                 "instruction guidance 2"):
        assert word in text


def test_bench_config_variants():
    import pytest

    from instructavatar.benchmarks.bench_pipeline import bench_config

    assert bench_config("demo").vae.warp and not bench_config("demo:nowarp").vae.warp
    assert bench_config("demo:nowarp").name == "demo"
    with pytest.raises(ValueError, match="unknown variant"):
        bench_config("demo:fast")
    with pytest.raises(SystemExit):
        main(["--configs", "demo:fast"])
