"""The shipped evaluators: strict loading, accuracy on held-out identities, context rules, the eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from instructavatar.avatarworld import behaviour, identity
from instructavatar.avatarworld import controls as C
from instructavatar.avatarworld import evaluators as E
from instructavatar.avatarworld import metrics as M
from instructavatar.avatarworld.render import FaceRenderer


@pytest.fixture(scope="module")
def ev() -> E.Evaluators:
    torch.set_num_threads(1)
    return E.load_evaluators()


@pytest.fixture(scope="module")
def heldout_batch():
    """200 i.i.d. frames of held-out identities: 100 random-control frames, 100 behaviour frames."""
    from instructavatar.avatarworld.train_evaluators import random_controls

    rng = np.random.default_rng(1234)
    ids = identity.identity_ids("heldout", 40)
    beh = np.concatenate([behaviour.emotion_controls(e, int(rng.integers(1, 4)), 40, rng)[::4]
                          for e in behaviour.EMOTIONS[:7]] + [behaviour.motion_controls(m, 40, rng)[::4]
                          for m in ("nod", "smile", "frown")])
    ctrl = np.concatenate([random_controls(100, rng), beh[:100]])
    r = FaceRenderer(128)
    frames = np.stack([r.render(identity.identity(ids[i % len(ids)]), c) for i, c in enumerate(ctrl)])
    return frames, ctrl


def test_shipped_checkpoint_loads_strictly_and_is_small(ev):
    path = E.CHECKPOINT_DIR / E.CHECKPOINT_NAME
    assert path.stat().st_size <= 3_000_000
    assert ev.intensity_thresholds and "*" in ev.intensity_thresholds
    assert set(ev.mouth_au_table) >= {"excess", "au25_p", "au26_p", "au25_mean", "au26_mean"}
    # what the checkpoint's card states, measured on held-out identities: the target (per-frame AU F1
    # 0.9 on renderer output) on whole held-out clips; frames of independent random controls stay harder
    report = ev.info["report"]
    assert report["clips_heldout"]["au_f1_micro"] >= 0.9
    assert report["iid_heldout"]["behaviour"]["au_f1_visible_micro"] >= 0.85
    # strict: a missing or extra tensor is an error
    from safetensors.torch import load_file
    sd = load_file(str(path))
    net = E.EvaluatorNet(ev.cfg)
    with pytest.raises(RuntimeError):
        # (not a BatchNorm step counter: torch fills a missing num_batches_tracked silently)
        weight = next(k for k in sd if k.endswith(".weight"))
        net.load_state_dict({k: v for k, v in sd.items() if k != weight}, strict=True)


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        E.load_evaluators(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not an evaluator checkpoint"):
        E.load_evaluators(tmp_path / "x.safetensors")


def test_accuracy_on_heldout_identities(ev, heldout_batch):
    frames, ctrl = heldout_batch
    pred = ev.predict(frames, temporal=False)
    assert pred["au_prob"].shape == (len(ctrl), len(C.AU_IDS)) and pred["pose"].shape == (len(ctrl), 3)
    vis = np.isin(np.array(C.AU_IDS), E.VISIBLE_AUS)
    # behaviour frames (what generated videos show): measured 0.92 with the shipped checkpoint; frames of
    # independent random AUs, poses and gaze are harder for it (measured 0.64): regression guards
    behaviour_f1 = M.frame_f1((pred["au_prob"][100:] >= 0.5) & vis, C.active_aus(ctrl[100:]) & vis)
    random_f1 = M.frame_f1((pred["au_prob"][:100] >= 0.5) & vis, C.active_aus(ctrl[:100]) & vis)
    assert behaviour_f1["micro"] >= 0.88, behaviour_f1
    assert random_f1["micro"] >= 0.58, random_f1
    pose_mae = np.abs(pred["pose"] - ctrl[:, C.ROTATION_SLICE]).mean(0)
    assert pose_mae.max() <= 3.0, pose_mae
    opening = C.mouth_opening(ctrl)
    assert np.abs(pred["mouth"][:, 0] - opening).mean() <= 0.05                               # measured 0.038
    assert M.pearson(pred["mouth"][:, 0], opening) >= 0.97                                    # measured 0.984
    assert np.abs(pred["au_intensity"][:, vis] - ctrl[:, C.AU_SLICE][:, vis]).mean() <= 0.12   # measured 0.10


def test_any_input_size(ev, heldout_batch):
    frames, ctrl = heldout_batch
    ident = identity.identity(identity.identity_ids("heldout", 1)[0])
    c = ctrl[:8]
    p128 = ev.predict(frames[:8], temporal=False)
    for size in (64, 256):
        f = FaceRenderer(size).render_clip(ident, c)
        p = ev.predict(f, temporal=False)
        assert p["pose"].shape == (8, 3)
        assert np.abs(p["pose"] - c[:, C.ROTATION_SLICE]).mean() <= 4.0
    assert p128["pose"].dtype == np.float32
    empty = ev.predict(np.zeros((0, 32, 32, 3), np.uint8))
    assert empty["au_prob"].shape == (0, len(C.AU_IDS))
    with pytest.raises(ValueError):
        ev.predict(np.zeros((2, 32, 32), np.uint8))


def test_eye_rule_splits_closure_into_au43_and_au45():
    T = 40
    eyes = np.zeros((T, 2), np.float32)
    eyes[5:8] = 1.0            # 3 frames: a blink
    eyes[15:35] = 0.9          # 20 frames: eyes closed
    eyes[37:39, 0] = 1.0       # one eye only: a wink, neither
    pred = {"eyes": eyes, "au_prob": np.zeros((T, len(C.AU_IDS)), np.float32),
            "au_intensity": np.zeros((T, len(C.AU_IDS)), np.float32)}
    E.resolve_eye_aus(pred)
    act = pred["au_prob"] >= 0.5
    i43, i45 = C.AU_IDS.index(43), C.AU_IDS.index(45)
    assert np.flatnonzero(act[:, i45]).tolist() == [5, 6, 7]
    assert np.flatnonzero(act[:, i43]).tolist() == list(range(15, 35))
    assert pred["au_intensity"][20, i43] == pytest.approx(0.9)


def test_mouth_rule_uses_opening_beyond_speech(ev):
    table = ev.mouth_au_table
    T = 3
    pred = {"mouth": np.array([[0.5, 0, 0], [0.5, 0, 0], [0.9, 0, 0]], np.float32),
            "au_prob": np.zeros((T, len(C.AU_IDS)), np.float32),
            "au_intensity": np.zeros((T, len(C.AU_IDS)), np.float32)}
    E.resolve_mouth_aus(pred, np.array([0.5, 0.0, 0.0]), table)
    i25, i26 = C.AU_IDS.index(25), C.AU_IDS.index(26)
    assert pred["au_prob"][0, i26] < 0.5 and pred["au_prob"][0, i25] < 0.5   # speech explains it all
    assert pred["au_prob"][2, i26] > 0.5 and pred["au_prob"][2, i25] > 0.5   # wide open, silent
    assert pred["au_intensity"][2, i26] > pred["au_intensity"][1, i26]


def test_clip_context_on_heldout_clip(ev):
    """A held-out identity talking with surprise (and idle blinks): with the speech context the clip-level AU
    set matches the truth's."""
    rng = np.random.default_rng(3)
    ctrl = behaviour.emotion_controls("surprised", 3, 75, rng)
    ctrl[:, C.INDEX["speech_jaw"]] = np.clip(0.35 + 0.3 * np.sin(np.arange(75) / 2.5), 0, 1)
    ctrl = C.clip_controls(ctrl)
    ident = identity.identity(identity.identity_ids("heldout", 3)[2])
    frames = FaceRenderer(128).render_clip(ident, ctrl)
    pred = ev.predict(frames, speech_jaw=ctrl[:, C.INDEX["speech_jaw"]])
    truth = M.ClipTruth("s", ctrl, emotion="surprised", intensity=3, speech=ctrl[:, C.SPEECH_SLICE])
    r = M.evaluate_clip(pred, truth, ev.intensity_thresholds)
    assert r["au_f1"] >= 0.8, r
    assert r["lipsync_corr"] >= 0.9
    assert r["pose_mae"] <= 3.0


# --------------------------------------------------------------------------------------------------- CLI
def _write_tiny_truth(root: Path) -> tuple[Path, Path]:
    truth, videos = root / "truth", root / "videos"
    truth.mkdir()
    videos.mkdir()
    rng = np.random.default_rng(7)
    ids = identity.identity_ids("heldout", 2)
    for k, (kind, ident) in enumerate(zip(("happy", "nod"), ids)):
        if kind == "nod":
            ctrl = behaviour.motion_controls("nod", 30, rng)
            extra = {"motions": np.array(["nod"]), "intensity": np.int64(0)}
        else:
            ctrl = behaviour.emotion_controls("happy", 2, 30, rng)
            ctrl[:, C.INDEX["speech_jaw"]] = np.clip(0.4 + 0.3 * np.sin(np.arange(30) / 2.0), 0, 1)
            extra = {"emotion": np.array("happy"), "intensity": np.int64(2)}
        frames = FaceRenderer(64).render_clip(identity.identity(ident), ctrl)
        np.savez(truth / f"clip{k}.npz", controls=ctrl, identity=np.int64(ident), **extra)
        np.save(videos / f"clip{k}.npy", frames)
    return truth, videos


def test_eval_cli_end_to_end(tmp_path, capsys):
    from instructavatar.avatarworld.evaluate_cli import main

    truth, videos = _write_tiny_truth(tmp_path)
    out = tmp_path / "r.json"
    rc = main(["--videos", str(videos), "--truth", str(truth), "--json", str(out), "--renderer-upper-bound",
               "--size", "64"])
    printed = capsys.readouterr().out
    assert rc == 0
    lines = printed.strip().splitlines()
    assert lines[0].split()[:3] == ["system", "clips", "AU_F1"]
    assert lines[2].startswith("generated") and lines[3].startswith("renderer (upper bound)")
    assert len({len(line) for line in lines}) == 1 or all(len(x) <= len(lines[0]) + 2 for x in lines)
    rep = json.loads(out.read_text())
    assert rep["generated"]["summary"]["clips"] == 2
    assert {c["clip_id"] for c in rep["generated"]["clips"]} == {"clip0", "clip1"}
    # the videos are the renderer frames: both rows agree
    g, u = rep["generated"]["summary"], rep["renderer_upper_bound"]["summary"]
    assert g["au_f1"] == pytest.approx(u["au_f1"]) and g["pose_mae"] == pytest.approx(u["pose_mae"])
    assert g["pose_mae"] < 4.0 and g["n_motion_ok"] == 1


def test_eval_cli_errors(tmp_path, capsys):
    from instructavatar.avatarworld.evaluate_cli import main

    truth, videos = _write_tiny_truth(tmp_path)
    assert main(["--videos", str(tmp_path / "missing"), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("instructavatar-eval: error: videos directory not found") and "\n" not in err
    assert main(["--videos", str(videos), "--truth", str(tmp_path / "nothere")]) == 2
    assert "truth directory not found" in capsys.readouterr().err
    (videos / "clip0.npy").unlink()
    (videos / "clip0.mp4").write_bytes(b"this is not a video")
    assert main(["--videos", str(videos), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read video" in err and "clip0.mp4" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--videos", str(empty), "--truth", str(truth)]) == 2


def test_eval_cli_reads_mp4(tmp_path, capsys):
    av = pytest.importorskip("av")
    from instructavatar.avatarworld.evaluate_cli import read_video

    frames = FaceRenderer(64).render_clip(identity.identity(identity.identity_ids("heldout", 1)[0]),
                                          behaviour.idle_controls(10, np.random.default_rng(0)))
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    got = read_video(path)
    assert got.shape == frames.shape and np.abs(got.astype(int) - frames).mean() < 12


# --------------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_training_learns(tmp_path):
    from instructavatar.avatarworld import train_evaluators as T

    torch.set_num_threads(1)
    cfg = E.EvaluatorConfig()
    inputs, ctrl = T.build_dataset(1500, seed=3, cfg=cfg, workers=1)
    rng = np.random.default_rng(9)
    ctrl_v = T.random_controls(200, rng)
    ids = np.array(identity.identity_ids("heldout", 20))[np.arange(200) % 20]
    frames = T.render_frames_full(ids, ctrl_v, np.full(200, 128), workers=1)

    def pose_mae(net):
        pred = E.Evaluators(net).predict(frames, temporal=False)
        return float(np.abs(pred["pose"] - ctrl_v[:, C.ROTATION_SLICE]).mean())

    def train_loss(net):                                         # on frames it was trained on
        x = torch.from_numpy(inputs[:256]).permute(0, 3, 1, 2).float().div(255.0)
        tgt = {k: torch.from_numpy(v[:256]) for k, v in E.controls_to_targets(ctrl[:256]).items()}
        with torch.no_grad():
            return float(T.loss_fn(net(x), tgt))

    torch.manual_seed(0)
    fresh = E.EvaluatorNet(cfg).eval()
    before, loss_before = pose_mae(fresh), train_loss(fresh)
    net = T.train(inputs, ctrl, cfg, steps=300, batch=64, lr=2e-3, seed=0, log_every=0)
    after, loss_after = pose_mae(net), train_loss(net)
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)       # the loop fits its data
    # and generalises to held-out identities with random poses (1500 frames: measured 11.3 -> 8.4 deg)
    assert after < 0.85 * before, (before, after)
    ev = E.Evaluators(net)
    path = ev.save(tmp_path / "e.safetensors")
    again = E.load_evaluators(path)
    np.testing.assert_allclose(again.predict(frames[:4], temporal=False)["pose"],
                               ev.predict(frames[:4], temporal=False)["pose"], atol=0.5)


def test_eval_cli_on_generator_dataset(tmp_path, capsys):
    """Truth = a data set written by the data generator (stored frames); videos named by clip index."""
    from instructavatar.avatarworld import dataset
    from instructavatar.avatarworld.evaluate_cli import main

    cfg = dataset.GenerateConfig(out=str(tmp_path / "ds"), clips=2, seed=11, split="heldout", size=64,
                                 store_frames=True)
    dataset.generate(cfg, progress=False)
    ds = dataset.ClipDataset(cfg.out)
    videos = tmp_path / "videos"
    videos.mkdir()
    np.save(videos / "000001.npy", ds[1].frames)
    out = tmp_path / "r.json"
    assert main(["--videos", str(videos), "--truth", cfg.out, "--json", str(out), "--renderer-upper-bound"]) == 0
    rep = json.loads(out.read_text())
    assert [c["clip_id"] for c in rep["generated"]["clips"]] == ["1"]
    assert rep["renderer_upper_bound"]["summary"]["clips"] == 1
    assert "generated" in capsys.readouterr().out


@pytest.mark.slow
def test_shipped_checkpoint_reproduces_its_heldout_clip_accuracy(ev):
    """Re-measure the card's headline (per-frame AU F1 on the 40 held-out clips, with context) from scratch."""
    from instructavatar.avatarworld import train_evaluators as T

    args = ev.info["args"]
    rep = T.clip_report(ev, args["eval_clips"], args["seed"] + 200)
    assert rep["au_f1_micro"] == pytest.approx(ev.info["report"]["clips_heldout"]["au_f1_micro"], abs=0.01)
    assert rep["au_f1_micro"] >= 0.9                                   # the target
