"""The warping decoder (VAEConfig.warp): identity at zero flow, a warm start from a plain VAE, the landmark
supervision of its flow, and `train vae --warp` end to end (two steps, then a resume)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from instructavatar.engine.config import get_config
from instructavatar.engine.modules.vae import VAE, Decoder, warp
from instructavatar.training.common import load_vae_weights
from instructavatar.training.train_vae import flow_landmark_error

torch.set_num_threads(1)


def _configs():
    vae = get_config("demo").vae
    return replace(vae, warp=False), replace(vae, warp=True)


def test_zero_flow_is_the_identity_and_a_flow_shifts_by_pixels():
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(warp(x, torch.zeros(2, 2, 16, 16)), x)
    flow = torch.zeros(2, 2, 16, 16)
    flow[:, 0] = 2.0 / 16                                   # sample one pixel to the right
    y = warp(x, flow)
    torch.testing.assert_close(y[..., :-1], x[..., 1:])
    torch.testing.assert_close(y[..., -1], x[..., -1])     # border padding repeats the edge


def test_appearance_state_carries_the_portrait_pixels():
    plain, warped = _configs()
    vae = VAE(warped, 128).eval()
    image = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        app = vae.encode_appearance(image)
    a = 128 // warped.app_downsample
    assert app.shape == (1, warped.appearance_channels, a, a)
    ca, cp = warped.app_channels, 3 * warped.app_downsample ** 2
    assert warped.appearance_channels == plain.appearance_channels + cp + warped.motion_channels
    torch.testing.assert_close(torch.nn.functional.pixel_shuffle(app[:, ca:ca + cp], warped.app_downsample), image)
    own = app[:, ca + cp:, ::a // warped.motion_side, ::a // warped.motion_side]     # one value per motion cell
    torch.testing.assert_close(own.flatten(1), vae.keyframe_encoder(image).detach())


def test_warp_vae_started_from_a_plain_one_renders_what_it_did():
    plain_cfg, warp_cfg = _configs()
    torch.manual_seed(0)
    plain = VAE(plain_cfg, 128).eval()
    warped = VAE(warp_cfg, 128).eval()
    with pytest.raises(RuntimeError):
        load_vae_weights(warped, plain.state_dict())                      # new parts missing: refused ...
    load_vae_weights(warped, plain.state_dict(), new_parts_ok=True)       # ... unless asked for
    image = torch.rand(2, 3, 128, 128) * 2 - 1
    motion = torch.randn(2, plain_cfg.motion_dim)
    with torch.no_grad():
        before = plain.decode_raw(motion, plain.encode_appearance(image))
        after, flow = warped.decode_raw_with_flow(motion, warped.encode_appearance(image))
    assert torch.count_nonzero(flow) == 0
    blend = torch.sigmoid(torch.tensor(-4.0))                              # the mask's starting value
    torch.testing.assert_close(after, before + blend * (image - before), atol=1e-5, rtol=1e-5)


def test_decoder_with_image_skip_needs_the_image():
    cfg = get_config("demo").vae.decoder
    dec = Decoder(cfg, image_skip=True)
    z = torch.zeros(1, cfg.in_channels, 32, 32)
    with pytest.raises(ValueError, match="image="):
        dec(z)
    assert dec(z, image=torch.zeros(1, 3, 128, 128)).shape == (1, 3, 128, 128)


def test_detail_head_starts_at_zero_adds_to_the_blend_and_stays_in_range():
    cfg = get_config("demo").vae.decoder
    torch.manual_seed(0)
    dec = Decoder(cfg, image_skip=True).eval()
    z, image = torch.randn(1, cfg.in_channels, 32, 32), torch.rand(1, 3, 128, 128) * 2 - 1
    colour = torch.tensor([0.1, -0.1, 0.0])
    with torch.no_grad():
        start = dec(z, image=image)
        dec.detail_out.bias.copy_(colour.repeat_interleave(4))            # 12 = 3 colours x 2x2 sub-pixels
        moved = dec(z, image=image)
        dec.detail_out.bias.fill_(5.0)
        saturated = dec(z, image=image)
    assert float(start.abs().max()) <= 1.0
    torch.testing.assert_close(moved, (start + colour.view(1, 3, 1, 1)).clamp(-1, 1))
    assert torch.all(saturated == 1.0)


def test_a_state_without_the_detail_head_is_the_same_model():
    from instructavatar.training.package import with_zero_detail

    _, warp_cfg = _configs()
    torch.manual_seed(0)
    old = VAE(replace(warp_cfg, detail=False), 128).eval()
    new = VAE(warp_cfg, 128).eval()
    state = old.state_dict()
    assert not any(k.startswith(VAE.DETAIL_PART) for k in state)
    load_vae_weights(new, state)                                         # the head may be missing ...
    with pytest.raises(RuntimeError):
        load_vae_weights(new, {k: v for k, v in state.items() if not k.startswith("decoder.mask_out.")})
    image, motion = torch.rand(2, 3, 128, 128) * 2 - 1, torch.randn(2, warp_cfg.motion_dim)
    with torch.no_grad():
        old.flow_head.conv_out.weight.normal_(0, 0.02)
        new.flow_head.conv_out.weight.copy_(old.flow_head.conv_out.weight)
        torch.testing.assert_close(new.decode_raw(motion, new.encode_appearance(image)),
                                   old.decode_raw(motion, old.encode_appearance(image)))     # ... it adds zero
    expected = {f"vae.{k}": v for k, v in new.state_dict().items()}
    filled = with_zero_detail(expected, {f"vae.{k}": v for k, v in state.items()})
    assert set(filled) == set(expected) and not filled["vae.decoder.detail_out.weight"].any()
    kept = with_zero_detail(expected, expected)
    assert kept is expected


def test_flow_landmark_error_in_pixels():
    tgt = torch.tensor([[[10.0, 20.0], [64.0, 64.0], [100.0, 30.0]]])
    src = tgt + torch.tensor([3.0, 4.0])
    zero = torch.zeros(1, 2, 32, 32)
    assert float(flow_landmark_error(zero, tgt, src, 128)) == pytest.approx(5.0, abs=1e-5)
    exact = torch.zeros(1, 2, 32, 32)
    exact[:, 0], exact[:, 1] = 3.0 * 2 / 128, 4.0 * 2 / 128              # a uniform flow of (3, 4) pixels
    assert float(flow_landmark_error(exact, tgt, src, 128)) == pytest.approx(0.0, abs=1e-5)


def test_train_vae_warp_runs_and_resumes(tmp_path):
    from instructavatar.training.train_vae import main

    run = tmp_path / "run"
    args = ["--config", "demo", "--run", str(run), "--warp", "on", "--batch", "2", "--threads", "1",
            "--eval-every", "2", "--save-every", "1"]
    assert main(args + ["--steps", "2"]) == 0
    state = torch.load(run / "state.pt", weights_only=False)
    assert state["step"] == 2 and any(k.startswith("flow_head.") for k in state["model"])
    assert main(args + ["--steps", "3"]) == 0
    assert torch.load(run / "state.pt", weights_only=False)["step"] == 3
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "eval_flow_px" in line]
    assert evals and all(e["eval_flow_px"] > 0 for e in evals)


class _Decode(torch.nn.Module):
    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, motion, appearance):
        return self.vae.decode(motion, appearance)


def test_warp_decoder_exports_to_onnx_and_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    _, warp_cfg = _configs()
    torch.manual_seed(0)
    vae = VAE(warp_cfg, 128).eval()
    with torch.no_grad():                      # a non-zero flow and mask, so the warp path really runs
        vae.flow_head.conv_out.weight.normal_(0, 0.02)
        vae.decoder.mask_out.bias.fill_(0.0)
        vae.decoder.detail_out.weight.normal_(0, 0.02)
        app = vae.encode_appearance(torch.rand(1, 3, 128, 128) * 2 - 1).repeat(3, 1, 1, 1)
    motion = torch.randn(3, warp_cfg.motion_dim)
    path = tmp_path / "decoder.onnx"
    torch.onnx.export(_Decode(vae), (motion, app), str(path), dynamo=False, opset_version=17,
                      input_names=["motion", "appearance"], output_names=["frames"],
                      dynamic_axes={"motion": {0: "N"}, "appearance": {0: "N"}, "frames": {0: "N"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"motion": motion[:2].numpy(), "appearance": app[:2].numpy()})
    with torch.no_grad():
        want = vae.decode(motion[:2], app[:2]).numpy()
    assert abs(got - want).max() < 1e-4


def test_train_vae_keep_latents_trains_only_the_decoder_side(tmp_path):
    from instructavatar.training.train_vae import main

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--config", "demo", "--batch", "2", "--threads", "1", "--eval-every", "5", "--lr", "1e-2"]
    assert main(common + ["--run", str(first), "--steps", "1"]) == 0
    assert main(common + ["--run", str(second), "--steps", "2", "--keep-latents",
                          "--init-from", str(first / "state.pt")]) == 0
    a = torch.load(first / "state.pt", weights_only=False)["model"]
    b = torch.load(second / "state.pt", weights_only=False)["model"]
    for k in a:
        if k.startswith(("motion_encoder.", "keyframe_encoder.")):
            assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["decoder.conv_out.weight"], b["decoder.conv_out.weight"])
    with pytest.raises(SystemExit):
        main(common + ["--run", str(tmp_path / "x"), "--steps", "1", "--keep-latents", "--au-weight", "1"])


def test_train_vae_warp_off_trains_a_plain_vae(tmp_path):
    from instructavatar.training.train_vae import main

    run = tmp_path / "plain"
    assert main(["--config", "demo", "--run", str(run), "--warp", "off", "--batch", "2", "--threads", "1",
                 "--steps", "1", "--eval-every", "5"]) == 0
    keys = torch.load(run / "state.pt", weights_only=False)["model"]
    assert not any(k.startswith(VAE.WARP_PARTS) for k in keys)
    assert "flow_px" not in (run / "log.jsonl").read_text()


def test_train_vae_detail_off_leaves_out_the_detail_head(tmp_path):
    from instructavatar.training.train_vae import main

    run = tmp_path / "nodetail"
    assert main(["--config", "demo", "--run", str(run), "--detail", "off", "--batch", "2", "--threads", "1",
                 "--steps", "1", "--eval-every", "5"]) == 0
    keys = torch.load(run / "state.pt", weights_only=False)["model"]
    assert "flow_head.conv_out.weight" in keys and not any(k.startswith(VAE.DETAIL_PART) for k in keys)
