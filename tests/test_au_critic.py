"""The decoder's training-only AU critic (training/au_critic.py) and the packaged motion generator (the shipped
audio-only lower bound, training/package.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instructavatar.avatarworld import controls as C
from instructavatar.avatarworld.evaluators import CHECKPOINT_DIR, CHECKPOINT_NAME, face_crop, frames_to_input
from instructavatar.avatarworld.train_evaluators import augment
from instructavatar.engine.config import get_config
from instructavatar.training.au_critic import (
    CRITIC_CONFIG,
    VISIBLE_COLUMNS,
    au_critic_loss,
    load_critic,
    save_critic,
)


def _critic():
    from instructavatar.avatarworld.evaluators import EvaluatorNet

    torch.manual_seed(0)
    return EvaluatorNet(CRITIC_CONFIG).eval()


def test_face_crop_is_the_evaluators_preprocessing():
    frames = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(face_crop(x, CRITIC_CONFIG), frames_to_input(frames, CRITIC_CONFIG).contiguous())


def test_critic_differs_from_the_evaluators_and_they_are_refused(tmp_path):
    from instructavatar.avatarworld.evaluators import EvaluatorConfig

    assert CRITIC_CONFIG != EvaluatorConfig()               # its own architecture
    with pytest.raises(ValueError, match="not an AU critic"):
        load_critic(CHECKPOINT_DIR / CHECKPOINT_NAME)         # the evaluators never become a training signal
    net = _critic()
    path = save_critic(net, tmp_path / "c.safetensors", {"steps": 0})
    back = load_critic(path)
    x = torch.rand(2, 3, CRITIC_CONFIG.size, CRITIC_CONFIG.size)
    torch.testing.assert_close(back(x)["au_logit"], net(x)["au_logit"])
    assert not any(p.requires_grad for p in back.parameters())


def test_au_critic_loss_is_the_visible_au_bce_and_reaches_only_the_frames():
    critic = load_critic_frozen = _critic().requires_grad_(False)
    frames = (torch.rand(4, 3, 128, 128) * 2 - 1).requires_grad_(True)
    controls = torch.zeros(4, C.NUM_CONTROLS)
    controls[:2, C.AU_IDS.index(12)] = 0.8                     # active in two frames
    controls[2, C.AU_IDS.index(45)] = 1.0                      # a blink: not single-frame visible, not scored
    loss = au_critic_loss(critic, frames, controls, torch.Generator().manual_seed(3))
    x = augment(face_crop((frames + 1) * 0.5, CRITIC_CONFIG), torch.Generator().manual_seed(3))
    logits = load_critic_frozen(x)["au_logit"][:, VISIBLE_COLUMNS]
    want = torch.zeros_like(logits)
    want[:2, VISIBLE_COLUMNS.index(C.AU_IDS.index(12))] = 1.0
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, want))
    loss.backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert len(VISIBLE_COLUMNS) == 12 and C.AU_IDS.index(45) not in VISIBLE_COLUMNS


def test_train_vae_adds_the_critic_loss_when_asked(tmp_path):
    from instructavatar.training.train_vae import main

    path = save_critic(_critic(), tmp_path / "c.safetensors", {})

    def run(name, *extra):
        return main(["--config", "demo", "--run", str(tmp_path / name), "--batch", "2", "--threads", "1",
                     "--eval-every", "1", "--steps", "1", *extra])

    assert run("critic", "--au-critic", str(path), "--au-critic-weight", "0.5") == 0
    log = [json.loads(line) for line in (tmp_path / "critic" / "log.jsonl").read_text().splitlines()]
    assert any("eval_au_critic" in r for r in log)
    assert "critic_rng" in torch.load(tmp_path / "critic" / "state.pt", weights_only=False)
    with pytest.raises(SystemExit):
        run("neg", "--au-critic", str(path), "--au-critic-weight", "-1")
    assert not (tmp_path / "neg").exists()
    with pytest.raises(SystemExit):                            # a usage error, not a traceback mid-setup
        run("missing", "--au-critic", str(tmp_path / "none.safetensors"))
    assert not (tmp_path / "missing").exists()


def _motion_state(model, tmp_path, stats=None):
    sd = {k: v.clone() for k, v in model.trainable_state_dict().items()
          if k.startswith(("audio_encoder.", "denoiser."))}
    torch.manual_seed(1)
    for v in sd.values():
        if v.is_floating_point():
            v.add_(0.01 * torch.randn_like(v))
    shift, scale = stats or (model.vae.motion_shift.clone(), model.vae.motion_scale.clone())
    path = tmp_path / "motion.pt"
    torch.save({"model": sd, "step": 7, "seconds": 60.0, "flags": {"no_text": True},
                "motion_stats": {"shift": shift, "scale": scale}}, path)
    return path, sd


def test_motion_only_package_round_trip_and_checks(tmp_path):
    from instructavatar.engine.loader import build_model
    from instructavatar.engine.modules.weights import WeightsError
    from instructavatar.training.package import load_motion_only, package_motion_only

    model = build_model(get_config("demo"))
    path, sd = _motion_state(model, tmp_path)
    out = package_motion_only(path, tmp_path / "audio_only.safetensors")
    meta = load_motion_only(model, out)
    assert json.loads(meta["flags"]) == {"no_text": True} and meta["motion_step"] == "7"
    got = model.trainable_state_dict()
    for k, v in sd.items():
        torch.testing.assert_close(got[k], v.half().float() if v.is_floating_point() else v)
    with pytest.raises(WeightsError, match="not a motion-generator file"):
        load_motion_only(model, CHECKPOINT_DIR / CHECKPOINT_NAME)
    other, _ = _motion_state(model, tmp_path, (model.vae.motion_shift + 1.0, model.vae.motion_scale))
    with pytest.raises(WeightsError, match="another VAE"):
        load_motion_only(model, package_motion_only(other, tmp_path / "other.safetensors"))


def test_package_with_the_shipped_generator_reproduces_the_checkpoint(tmp_path):
    """A decoder-side fine-tune is packaged with the checkpoint's own generator (`--motion demo.safetensors`):
    the shipped VAE + the shipped generator repackaged give the shipped tensors back."""
    from safetensors.torch import load_file

    from instructavatar.engine.loader import DEMO_WEIGHTS
    from instructavatar.training.common import init_weights
    from instructavatar.training.package import package

    vae = {"model": {k: v for k, v in init_weights(str(DEMO_WEIGHTS), "vae.").items()}, "step": 1}
    torch.save(vae, tmp_path / "vae.pt")
    out = package(tmp_path / "vae.pt", DEMO_WEIGHTS, tmp_path / "demo.safetensors")
    a, b = load_file(str(DEMO_WEIGHTS)), load_file(str(out))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_quality_main_refuses_a_non_generator_audio_only_file_in_one_line(tmp_path, capsys):
    from instructavatar.training.quality import main

    assert main(["main", "--clips", "1", "--audio-only", str(CHECKPOINT_DIR / CHECKPOINT_NAME)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a motion-generator file" in err and "\n" not in err and "Traceback" not in err
