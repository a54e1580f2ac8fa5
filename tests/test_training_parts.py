"""Pieces of training/ used by the shipped model: latent statistics, the latent probe, state merging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from instructavatar.avatarworld import controls as C
from instructavatar.engine.config import get_config
from instructavatar.engine.modules.vae import VAE
from instructavatar.training.latent_probe import load_probe, probe_predict, save_probe, train_probe
from instructavatar.training.motion_data import latent_stats
from instructavatar.training.package import combined_state

torch.set_num_threads(1)


def test_vae_motion_statistics_normalise_and_invert():
    cfg = get_config("demo")
    vae = VAE(cfg.vae, cfg.media.image_size).eval()
    lm = torch.rand(2, *cfg.vae.motion_input_shape) * 2 - 1
    app = vae.encode_appearance(torch.zeros(2, 3, 128, 128))
    with torch.no_grad():
        raw = vae.encode_motion_raw(lm)
        assert torch.equal(vae.encode_motion(lm), raw)                  # identity until set
        shift, scale = torch.randn(cfg.motion_dim), torch.rand(cfg.motion_dim) + 0.5
        vae.set_motion_stats(shift, scale)
        z = vae.encode_motion(lm)
        torch.testing.assert_close(z, (raw - shift) / scale)
        torch.testing.assert_close(vae.decode(z, app), vae.decode_raw(raw, app), atol=1e-5, rtol=1e-5)
        key = vae.encode_keyframe(torch.zeros(1, 3, 128, 128))
        torch.testing.assert_close(key, (vae.keyframe_encoder(torch.zeros(1, 3, 128, 128)) - shift) / scale)
    assert {"motion_shift", "motion_scale"} <= set(vae.state_dict())


def test_latent_stats_floor():
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.normal(3.0, 2.0, (500, 3)), np.full((500, 1), 7.0)], 1).astype(np.float32)
    shift, scale = latent_stats(raw)
    np.testing.assert_allclose(shift, raw.mean(0), rtol=1e-5)
    assert abs(scale[0] - 2.0) < 0.2
    assert scale[3] == pytest.approx(0.1 * np.median(raw.std(0)))    # a constant dimension is not blown up


def test_latent_probe_reads_a_linear_code(tmp_path):
    """Latents that encode the controls linearly: the probe recovers pose and mouth, and AU activity."""
    rng = np.random.default_rng(0)
    n = 4000
    ctrl = np.zeros((n, C.NUM_CONTROLS), np.float32)
    ctrl[:, C.AU_SLICE] = rng.random((n, len(C.AU_IDS))) * (rng.random((n, len(C.AU_IDS))) < 0.3)
    ctrl[:, C.ROTATION_SLICE] = rng.uniform(-20, 20, (n, 3))
    ctrl[:, C.INDEX["speech_jaw"]] = rng.uniform(0, 0.8, n)
    ctrl = C.clip_controls(ctrl)
    mix = rng.normal(size=(C.NUM_CONTROLS, 32)).astype(np.float32)
    z = ctrl @ mix / 10
    probe = train_probe(z[:3500], ctrl[:3500], steps=600, batch=256)
    path = save_probe(probe, tmp_path / "p.safetensors", {"x": 1})
    pred = probe_predict(load_probe(path), z[3500:])
    t = ctrl[3500:]
    assert set(pred) >= {"au_prob", "au_intensity", "pose", "mouth", "eyes", "gaze"}
    assert np.abs(pred["pose"] - t[:, C.ROTATION_SLICE]).mean() < 3.0
    assert np.abs(pred["mouth"][:, 0] - C.mouth_opening(t)).mean() < 0.1
    vis = [C.AU_IDS.index(a) for a in (1, 2, 4, 12)]
    acc = ((pred["au_prob"][:, vis] >= 0.5) == C.active_aus(t)[:, vis]).mean()
    assert acc > 0.8
    with pytest.raises(ValueError, match="not a latent-probe"):
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
        load_probe(tmp_path / "x.safetensors")


def test_combined_state_takes_the_motion_runs_statistics():
    vae = {"model": {"decoder.w": torch.ones(1), "motion_shift": torch.zeros(2), "motion_scale": torch.ones(2)}}
    motion = {"model": {"denoiser.w": torch.zeros(1)},
              "motion_stats": {"shift": torch.tensor([1.0, 2.0]), "scale": torch.tensor([3.0, 4.0])}}
    s = combined_state(vae, motion)
    assert set(s) == {"vae.decoder.w", "vae.motion_shift", "vae.motion_scale", "denoiser.w"}
    assert s["vae.motion_scale"].tolist() == [3.0, 4.0]


def test_quality_cli_missing_files_are_one_line_errors(tmp_path, capsys):
    from instructavatar.training.quality import main

    assert main(["main", "--clips", "1", "--weights", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "file not found" in err and "\n" not in err and "Traceback" not in err


def test_feature_weight_marks_the_landmarks_only():
    from instructavatar.training.train_vae import feature_weight

    lm = -torch.ones(1, 3, 64, 64)
    lm[0, :, 20, 30] = 1.0                                   # one landmark dot at (row 20, col 30) of 64
    w = feature_weight({"landmarks": lm}, 128, 64, 3.0)
    assert w.shape == (1, 1, 128, 128)
    assert w[0, 0, 40, 60] == 4.0 and w[0, 0, 40 + 6, 60 + 6] == 4.0     # within 3 landmark pixels (x2)
    assert w[0, 0, 40 + 8, 60] == 1.0 and w[0, 0, 0, 0] == 1.0
    assert torch.equal(feature_weight({"landmarks": -torch.ones(2, 3, 64, 64)}, 128, 64, 3.0),
                       torch.ones(2, 1, 128, 128))


def test_feature_weight_from_points_matches_the_dot_image():
    """A VAE reading coordinates weights the same pixels as one reading the hard-dot image of them."""
    from instructavatar.avatarworld.render import landmark_image
    from instructavatar.training.train_vae import dot_mask, feature_weight

    rng = np.random.default_rng(0)
    pts = rng.uniform(-3, 131, (3, 129, 2)).astype(np.float32)           # some fall outside the frame
    img = np.stack([landmark_image(p, 128, 64) for p in pts]).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    want = (img.max(1, keepdims=True) > -0.9).astype(np.float32)
    torch.testing.assert_close(dot_mask(torch.from_numpy(pts), 128, 64), torch.from_numpy(want))
    batch_pts = {"landmarks": torch.zeros(3, 129, 2), "target_points": torch.from_numpy(pts)}
    torch.testing.assert_close(feature_weight(batch_pts, 128, 64, 2.0),
                               feature_weight({"landmarks": torch.from_numpy(img)}, 128, 64, 2.0))


def test_points_motion_encoder_standardises_its_input():
    from instructavatar.avatarworld.render import NUM_LANDMARKS

    cfg = get_config("demo")
    assert cfg.vae.landmark_points == NUM_LANDMARKS                     # the world's landmarks, all of them
    enc = VAE(cfg.vae, cfg.media.image_size).motion_encoder.eval()
    pts = torch.rand(64, NUM_LANDMARKS, 2) * 0.1 + 0.3
    enc.set_input_stats(pts)
    x = (pts.flatten(1) - enc.point_shift) / enc.point_scale
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0) - 1).abs().max() < 1e-3
    with torch.no_grad():
        torch.testing.assert_close(enc(pts), enc.net(x).view(64, -1, cfg.vae.motion_side, cfg.vae.motion_side))
    assert {"point_shift", "point_scale"} <= set(enc.state_dict())       # travel with the weights


def test_motion_input_is_coordinates_or_the_dot_image():
    from dataclasses import replace

    from instructavatar.avatarworld.render import landmark_image
    from instructavatar.training.vae_data import motion_input

    vae_cfg = get_config("demo").vae
    pts = np.random.default_rng(1).uniform(0, 128, (2, 5, 129, 2)).astype(np.float32)
    x = motion_input(pts, 128, vae_cfg)
    assert x.shape == (2, 5, 129, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x, pts / 64.0 - 1.0, atol=1e-6)
    img = motion_input(pts[0], 128, replace(vae_cfg, landmark_points=0))
    assert img.shape == (5, 3, 64, 64)
    np.testing.assert_allclose(img[2], landmark_image(pts[0, 2], 128, 64).transpose(2, 0, 1) / 127.5 - 1.0,
                               atol=1e-6)
    with pytest.raises(ValueError, match="reads 129 landmarks"):
        motion_input(pts[:, :, :100], 128, vae_cfg)


@pytest.mark.parametrize("grid, dim", [("3x8", 192), ("8x4", 128), ("4x16", 1024)])
def test_motion_grid_experiment_builds_a_consistent_vae(grid, dim):
    from instructavatar.training.train_vae import with_motion_grid

    cfg = with_motion_grid(get_config("demo"), grid)
    assert cfg.motion_dim == dim
    vae = VAE(cfg.vae, cfg.media.image_size).eval()
    with torch.no_grad():
        mot = vae.motion_encoder(torch.zeros(2, *cfg.vae.motion_input_shape)).chunk(2, dim=1)[0].flatten(1)
        app = vae.encode_appearance(torch.zeros(2, 3, 128, 128))
        assert vae.decode_raw(mot, app).shape == (2, 3, 128, 128)
    with pytest.raises(ValueError, match="grid side"):
        with_motion_grid(get_config("demo"), "3x5")


def test_au_readout_trains_the_motion_encoder_and_stays_out_of_the_checkpoint(tmp_path):
    from instructavatar.training.train_vae import AU_COLUMNS, au_head_for, main, vae_losses

    cfg = get_config("demo")
    vae = VAE(cfg.vae, cfg.media.image_size)
    head = au_head_for(vae)
    size = cfg.media.image_size
    controls = torch.zeros(2, C.NUM_CONTROLS)
    controls[:, AU_COLUMNS] = torch.rand(2, len(AU_COLUMNS))
    batch = {"source": torch.rand(2, 3, size, size) * 2 - 1, "target": torch.rand(2, 3, size, size) * 2 - 1,
             "landmarks": torch.rand(2, *cfg.vae.motion_input_shape) * 2 - 1, "controls": controls,
             "target_points": torch.rand(2, cfg.vae.landmark_points, 2) * size,
             "source_points": torch.rand(2, cfg.vae.landmark_points, 2) * size}
    losses = vae_losses(vae, batch, 1e-5, au_head=head, au_weight=1.0)
    mot = vae.motion_encoder(batch["landmarks"]).chunk(2, 1)[0].flatten(1)
    torch.testing.assert_close(losses["au_mse"], ((head(mot) - controls[:, AU_COLUMNS]) ** 2).mean())
    losses["au_mse"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.motion_encoder.parameters())
    assert "au_mse" not in vae_losses(vae, batch, 1e-5)                 # off unless asked for

    def args(run):
        return ["--config", "demo", "--run", str(tmp_path / run), "--batch", "2", "--threads", "1",
                "--eval-every", "5"]

    assert main(args("au") + ["--steps", "1", "--au-weight", "1"]) == 0
    state = torch.load(tmp_path / "au" / "state.pt", weights_only=False)
    assert set(state["au_head"]) == {"weight", "bias"}
    assert not any("au_head" in k for k in state["model"])            # the packaged VAE never sees it
    assert main(args("plain") + ["--steps", "1"]) == 0
    with pytest.raises(SystemExit, match="without --au-weight"):
        main(args("plain") + ["--steps", "2", "--au-weight", "1"])
    assert main(args("dots") + ["--steps", "1", "--motion-input", "image"]) == 0
    with pytest.raises(SystemExit, match="without --soft-dots"):
        main(args("dots") + ["--steps", "2", "--motion-input", "image", "--soft-dots"])
    with pytest.raises(SystemExit):                                    # coordinates have no dots to soften
        main(args("soft") + ["--steps", "1", "--soft-dots"])
    # a points VAE started from an image one: everything but the motion encoder carried over, that one distilled
    assert main(args("pts") + ["--steps", "0", "--init-from", str(tmp_path / "dots" / "state.pt"),
                               "--distill-steps", "3"]) == 0
    src = torch.load(tmp_path / "dots" / "state.pt", weights_only=False)["model"]
    dst = torch.load(tmp_path / "pts" / "state.pt", weights_only=False)["model"]
    assert all(torch.equal(v, dst[k]) for k, v in src.items() if not k.startswith("motion_encoder."))
    assert "motion_encoder.net.0.weight" in dst and "motion_encoder.conv_in.weight" not in dst
    assert dst["motion_encoder.point_scale"].min() < 1.0 != dst["motion_encoder.point_scale"].max()  # stats set
    log = [json.loads(line) for line in (tmp_path / "pts" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and log[0]["distill_mse_mean"] > 0
    with pytest.raises(SystemExit):
        main(args("neg") + ["--steps", "1", "--au-weight", "-1"])
    assert not (tmp_path / "neg").exists()                             # refused before anything is written


def test_frame_pairs_can_draw_soft_landmark_dots():
    from instructavatar.avatarworld.render import REGION_COLOURS
    from instructavatar.training.vae_data import FramePairSampler

    allowed = {(0, 0, 0)} | set(REGION_COLOURS.values())
    from dataclasses import replace

    image_cfg = replace(get_config("demo").vae, landmark_points=0)
    to_uint8 = lambda x: np.rint((x.transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)  # noqa: E731
    hard = FramePairSampler(128, image_cfg).sample(np.random.default_rng(3))
    soft = FramePairSampler(128, image_cfg, soft_dots=True).sample(np.random.default_rng(3))
    hard["landmarks"], soft["landmarks"] = to_uint8(hard["landmarks"]), to_uint8(soft["landmarks"])
    np.testing.assert_array_equal(hard["target"], soft["target"])            # same frames, other dots
    colours = lambda img: {tuple(int(v) for v in p) for p in img.reshape(-1, 3)}  # noqa: E731
    assert colours(hard["landmarks"]) <= allowed
    assert not colours(soft["landmarks"]) <= allowed                         # partial-coverage shades


def test_landmark_au_r2_ridge_recovers_a_linear_map_in_both_forms():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "landmark_au_r2.py"
    spec = importlib.util.spec_from_file_location("landmark_au_r2", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x @ rng.normal(size=(5, 3)) + 0.01 * rng.normal(size=(300, 3))
    assert mod.ridge_r2(x, y, 250, 1e-3) > 0.99                          # primal form (5 features < 250)
    wide = np.concatenate([x, np.zeros((300, 400))], 1)                 # dual form (405 features > 250)
    assert abs(mod.ridge_r2(wide, y, 250, 1e-3) - mod.ridge_r2(x, y, 250, 1e-3)) < 1e-6
    assert mod.ridge_r2(rng.normal(size=(300, 5)), y, 250, 1.0) < 0.1     # unrelated inputs explain nothing


def test_expression_mask_marks_what_the_action_units_change():
    from instructavatar.avatarworld.identity import identity
    from instructavatar.avatarworld.render import FaceRenderer
    from instructavatar.training.train_vae import vae_losses
    from instructavatar.training.vae_data import FramePairSampler, expression_mask

    r, ident = FaceRenderer(128), identity(5)
    plain = C.clip_controls(np.zeros(C.NUM_CONTROLS, np.float32))
    assert not expression_mask(r, ident, plain, r.render(ident, plain)).any()        # no AU, nothing marked
    smile = plain.copy()
    smile[C.INDEX["au06"]] = smile[C.INDEX["au12"]] = 1.0
    m = expression_mask(r, ident, smile, r.render(ident, smile))
    assert 0.005 < m.mean() < 0.2                                                    # blush + folds, not the frame
    item = FramePairSampler(128, get_config("demo").vae, expression=True).sample(np.random.default_rng(0))
    assert item["expression"].shape == (1, 128, 128)
    # the weight reaches the loss: an error only on marked pixels costs more with the weight on
    cfg = get_config("demo")
    vae = VAE(cfg.vae, 128).eval()
    batch = {"source": torch.zeros(1, 3, 128, 128), "target": torch.zeros(1, 3, 128, 128),
             "landmarks": torch.zeros(1, *cfg.vae.motion_input_shape), "target_points": torch.zeros(1, 129, 2),
             "source_points": torch.zeros(1, 129, 2),
             "expression": torch.from_numpy(m[None, None].astype(np.float32))}
    with torch.no_grad():
        off = vae_losses(vae, batch, 0.0, train=False)["l1"]
        on = vae_losses(vae, batch, 0.0, train=False, expression_weight=8.0)["l1"]
    assert on > off


def test_blink_weight_reweights_only_the_windows_with_a_blink():
    from types import SimpleNamespace

    from instructavatar.engine.ddim import vp_alphas_cumprod
    from instructavatar.training.train_motion import MotionModel, losses

    cfg = get_config("demo")
    torch.manual_seed(0)
    model = MotionModel(cfg).eval()
    B, W, M, L = 3, cfg.stream.window_frames, cfg.motion_dim, 8
    batch = {"x0": torch.randn(B, W, M), "wave": torch.randn(B, W * cfg.media.samples_per_frame) * 0.1,
             "tokens": torch.randn(B, L, cfg.text.width), "mask": torch.ones(B, L),
             "pooled": torch.randn(B, cfg.text.width), "keyframe": torch.randn(B, M),
             "pose": torch.zeros(B, W, 3), "au": torch.zeros(B, len(C.AU_IDS)),
             "known": torch.zeros(B, W), "inten_ok": torch.ones(B), "intensity": torch.zeros(B, dtype=torch.int64)}
    ac = torch.from_numpy(vp_alphas_cumprod(cfg.diffusion).astype(np.float32))

    def mse(weight, blink):
        args = SimpleNamespace(blink_weight=weight, no_au_loss=False, lambda_au=0.1, lambda_pose=0.1,
                               lambda_inten=0.1)
        torch.manual_seed(1)
        b = {**batch, "blink": torch.tensor(blink)}
        with torch.no_grad():
            return float(losses(model, b, ac, args)["mse"])

    base = mse(0.0, [0.0, 0.0, 0.0])
    assert mse(5.0, [0.0, 0.0, 0.0]) == pytest.approx(base, rel=1e-6)      # no blink: no change
    assert mse(5.0, [1.0, 1.0, 1.0]) == pytest.approx(base, rel=1e-6)      # all weighted alike: a mean again
    assert mse(5.0, [1.0, 0.0, 0.0]) != pytest.approx(base, rel=1e-3)


def test_negative_blink_weight_is_a_usage_error(capsys):
    from instructavatar.training.train_motion import main

    with pytest.raises(SystemExit) as exc:
        main(["--blink-weight", "-1"])
    assert exc.value.code == 2 and "--blink-weight must be >= 0" in capsys.readouterr().err


def _prepared_folder(root: Path, seed: int, clips: int, vae_step: int, scale: float = 1.0,
                     digest: str | None = None) -> np.ndarray:
    """A prepared motion-data folder as `train prepare` + `train latents` leave it, with random latents."""
    from instructavatar.avatarworld import dataset
    from instructavatar.avatarworld.dataset import ClipDataset

    dataset.generate(dataset.GenerateConfig(out=str(root / "clips"), clips=clips, seed=seed, size=64,
                                            speech_cache=str(root.parent / "speech")), progress=False)
    lengths = np.array([len(ClipDataset(root / "clips", load_frames=False)[i].controls) for i in range(clips)])
    K, L, D = 3, 4, 8
    np.savez(root / "part_0000.npz", lengths=lengths, tokens=np.zeros((clips, K, L, D), np.float16),
             token_mask=np.ones((clips, K, L), np.uint8), pooled=np.zeros((clips, K, D), np.float16))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((int(lengths.sum()), 6))
    raw = ((z - z.mean(0)) / z.std(0) * scale + 0.5).astype(np.float32)     # the same statistics in every folder
    shift, sd = latent_stats(raw)
    extra = {} if digest is None else {"vae_sha256": np.array(digest)}
    np.savez(root / "latents.npz", frames=raw, keyframes=raw[:clips], shift=shift, scale=sd,
             vae_step=np.array(vae_step), **extra)
    return raw


def test_motion_data_joins_folders_with_the_first_folders_statistics(tmp_path):
    from instructavatar.training.motion_data import MotionData

    a, b, c, d, e = (tmp_path / n for n in "abcde")
    for p in (a, b, c, d, e):
        p.mkdir()
    raw_a = _prepared_folder(a, 0, 3, vae_step=7, digest="aa")
    raw_b = _prepared_folder(b, 1, 2, vae_step=7)               # no digest recorded (older latents): stats only
    one = MotionData(a)
    both = MotionData(f"{a},{b}")
    assert len(both) == 5 and len(both.latents) == len(raw_a) + len(raw_b) == both.frame_offsets[-1]
    assert both.tokens.shape[0] == 5 and len(both.audio) == 5 and len(both.kind) == 5
    np.testing.assert_array_equal(both.shift, one.shift)
    np.testing.assert_allclose(both.latents[len(raw_a):], (raw_b - one.shift) / one.scale, rtol=1e-6)
    np.testing.assert_allclose(both.latents[:len(raw_a)], one.latents)
    _prepared_folder(c, 2, 2, vae_step=8)                       # another VAE's latents: refused
    with pytest.raises(ValueError, match="VAE step 8"):
        MotionData([a, c])
    _prepared_folder(d, 3, 2, vae_step=7, scale=3.0)            # same step, different statistics: refused
    with pytest.raises(ValueError, match="statistics differ"):
        MotionData([a, d])
    _prepared_folder(e, 4, 2, vae_step=7, digest="bb")          # another VAE file: refused
    with pytest.raises(ValueError, match="different VAE files"):
        MotionData([a, e])
    with pytest.raises(FileNotFoundError, match="train latents"):
        MotionData([a, tmp_path / "missing"])
    z = dict(np.load(b / "latents.npz"))
    np.savez(b / "latents.npz", **{**z, "frames": z["frames"][:-1]})     # latents of other parts: refused
    with pytest.raises(RuntimeError, match="does not match the prepared parts"):
        MotionData([a, b])


def test_a_missing_data_folder_is_a_usage_error_before_the_run_folder_is_made(tmp_path, capsys):
    from instructavatar.training.train_motion import main

    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path / "missing"), "--run", str(tmp_path / "run")])
    assert exc.value.code == 2 and "train latents" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
