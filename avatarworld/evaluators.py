"""Evaluators of the synthetic world: a small CNN that reads a rendered (or generated) face frame back into
its controls, trained only on renderer output (see train_evaluators.py).

One shared backbone, six heads:

- AU detector: per-frame probability that each of ``controls.AU_IDS`` is active (intensity >=
  ``controls.AU_ACTIVE_THRESHOLD``) and its intensity 0..1;
- head pose: yaw / pitch / roll in degrees; gaze x / y; closure of the subject's left / right eye;
- mouth: effective opening (``controls.mouth_opening``), speech_width, speech_round.

Frames of any size: a fixed crop of the inner face (``EvaluatorConfig.crop``, fractions of the frame: brows to
chin of a centred head, with room for the head translation range) is resized to 64 x 64 RGB; at 128 px renders
that is about native resolution, so the small eye and lip AUs stay visible.

Four AUs are not visible in a single frame of this world, because the renderer draws them through shared
channels: AU25 (lips part), AU26 (jaw drop) and the speech jaw all only open the mouth
(``controls.mouth_opening``), and AU43 (eyes closed) and AU45 (blink) both close both eyes. ``predict``
resolves them with context, the way a human annotator would:

- AU43 / AU45 (``temporal=True``, the default for videos): both eyes closed (closure >= the AU threshold) for
  at least ``EYE_HOLD_FRAMES`` consecutive frames is AU43, a shorter closure is a blink (AU45);
- AU25 / AU26 (when the clip's ``speech_jaw`` track, from its audio, is given): the mouth opening beyond what
  the speech explains is mapped to AU25 / AU26 probability and intensity by lookup tables fitted on the
  world's behaviour (``mouth_au_table``, shipped in the checkpoint).

Without that context the network's own (prior-weighted) outputs for these four AUs are returned.
``load_evaluators()`` loads the shipped checkpoint (fp16 safetensors, strict), with the intensity-level
thresholds calibrated on ground-truth renderer clips (used by ``metrics.evaluate_clip``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import controls as C

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
CHECKPOINT_NAME = "evaluators.safetensors"
FORMAT = "instructavatar-evaluators-v1"

POSE_SCALE = np.array([30.0, 25.0, 25.0], np.float32)  # degrees -> about -1..1
EYE_HOLD_FRAMES = 9  # a closure of both eyes this long (frames at 25 fps) is AU43, shorter is a blink (AU45)
CONTEXT_AUS: tuple[int, ...] = (25, 26, 43, 45)  # not visible in a single frame (see module doc)
VISIBLE_AUS: tuple[int, ...] = tuple(a for a in C.AU_IDS if a not in CONTEXT_AUS)


@dataclass(frozen=True)
class EvaluatorConfig:
    size: int = 64                                                 # network input is size x size
    crop: tuple[float, float, float, float] = (0.2, 0.25, 0.8, 0.85)  # x0, y0, x1, y1 (fractions)
    widths: tuple[int, ...] = (32, 48, 64, 96, 128)                # one 3x3 conv per width
    strides: tuple[int, ...] = (2, 2, 1, 2, 2)
    hidden: int = 256
    n_au: int = len(C.AU_IDS)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EvaluatorNet(nn.Module):
    """(B, 3, S, S) float 0..1 -> dict of raw per-frame outputs (see ``heads``; ``decode_outputs``)."""

    # output name -> width; the order is the layout of the last linear layer
    heads: dict[str, int] = {"au_logit": len(C.AU_IDS), "au_intensity": len(C.AU_IDS), "pose": 3, "mouth": 3,
                             "gaze": 2, "eyes": 2}

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        self.cfg = cfg
        layers, cin, side = [], 3, cfg.size
        for w, s in zip(cfg.widths, cfg.strides):
            layers.append(_conv(cin, w, s))
            cin, side = w, side // s
        self.backbone = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, cfg.hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(cfg.hidden, sum(self.heads.values()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.backbone(x * 2.0 - 1.0)          # (B, C, S/16, S/16)
        y = self.out(self.fc(h))                  # (B, sum(heads))
        return dict(zip(self.heads, torch.split(y, list(self.heads.values()), dim=1)))


def frames_to_input(frames: np.ndarray | torch.Tensor, cfg: EvaluatorConfig) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (T, 3, size, size) float 0..1: the face crop, bilinear antialiased resize."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.array(frames, copy=True) if not frames.flags.writeable else
                                  np.ascontiguousarray(frames))
    x = frames
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {tuple(x.shape)}")
    return face_crop(x.permute(0, 3, 1, 2).float() / 255.0, cfg).contiguous(memory_format=torch.channels_last)


def face_crop(x: torch.Tensor, cfg: EvaluatorConfig) -> torch.Tensor:
    """(T, 3, H, W) float frames -> (T, 3, size, size): the face crop, bilinear antialiased resize. Differentiable
    (the decoder's training-only AU critic reads its output through it, training/au_critic.py)."""
    h, w = x.shape[-2], x.shape[-1]
    x0, y0, x1, y1 = cfg.crop
    x = x[..., round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
    if x.shape[-2:] != (cfg.size, cfg.size):
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", antialias=True, align_corners=False)
    return x


def decode_outputs(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw network outputs -> physical units (probabilities, intensities 0..1, degrees, ...)."""
    mouth = raw["mouth"]
    return {
        "au_prob": torch.sigmoid(raw["au_logit"]),
        "au_intensity": raw["au_intensity"].clamp(0.0, 1.0),
        "pose": raw["pose"] * torch.as_tensor(POSE_SCALE, device=mouth.device),
        "mouth": torch.stack([mouth[:, 0].clamp(0, 1), mouth[:, 1].clamp(-1, 1), mouth[:, 2].clamp(0, 1)], 1),
        "gaze": raw["gaze"].clamp(-1.0, 1.0),
        "eyes": raw["eyes"].clamp(0.0, 1.0),
    }


def controls_to_targets(controls: np.ndarray) -> dict[str, np.ndarray]:
    """(N, NUM_CONTROLS) controls -> the training targets of the heads, in network units."""
    c = np.asarray(controls, np.float32)
    au = c[:, C.AU_SLICE]
    return {
        "au_active": (au >= C.AU_ACTIVE_THRESHOLD).astype(np.float32),
        "au_intensity": au,
        "pose": c[:, C.ROTATION_SLICE] / POSE_SCALE,
        "mouth": np.stack([C.mouth_opening(c), c[:, C.INDEX["speech_width"]], c[:, C.INDEX["speech_round"]]], 1),
        "gaze": c[:, C.GAZE_SLICE],
        "eyes": np.stack(C.eye_closure(c), 1),
    }


# ------------------------------------------------------------------------------------------- context rules
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(d[0::2], d[1::2]))


def resolve_eye_aus(pred: dict[str, np.ndarray], hold_frames: int = EYE_HOLD_FRAMES) -> None:
    """Split the closure of both eyes into AU43 (held >= hold_frames) and AU45 (shorter), in place."""
    both = np.minimum(pred["eyes"][:, 0], pred["eyes"][:, 1])              # (T,)
    closed = both >= C.AU_ACTIVE_THRESHOLD
    long_ = np.zeros(len(both), bool)
    for s, e in _runs(closed):
        if e - s >= hold_frames:
            long_[s:e] = True
    p_closed = 1.0 / (1.0 + np.exp(-(both - C.AU_ACTIVE_THRESHOLD) / 0.04))
    i43, i45 = C.AU_IDS.index(43), C.AU_IDS.index(45)
    pred["au_prob"][:, i43] = np.where(long_, p_closed, np.minimum(p_closed, 0.49))
    pred["au_prob"][:, i45] = np.where(long_, 0.0, p_closed)
    pred["au_intensity"][:, i43] = np.where(long_, both, 0.0)
    pred["au_intensity"][:, i45] = np.where(long_, 0.0, both)


def resolve_mouth_aus(pred: dict[str, np.ndarray], speech_jaw: np.ndarray, table: dict) -> None:
    """AU25 / AU26 from the mouth opening beyond the speech (``table``: see ``fit_mouth_au_table``), in place."""
    n = len(pred["mouth"])
    jaw = np.zeros(n, np.float32)
    s = np.asarray(speech_jaw, np.float32).reshape(-1)[:n]
    jaw[:len(s)] = s
    excess = np.clip(pred["mouth"][:, 0] - jaw, 0.0, 1.0)
    grid = np.asarray(table["excess"], np.float64)
    for au in (25, 26):
        i = C.AU_IDS.index(au)
        pred["au_prob"][:, i] = np.interp(excess, grid, table[f"au{au}_p"])
        pred["au_intensity"][:, i] = np.interp(excess, grid, table[f"au{au}_mean"])


def fit_mouth_au_table(controls: np.ndarray, bins: int = 41, noise: float = 0.03,
                       rng: np.random.Generator | None = None) -> dict:
    """P(AU active | excess opening) and E[intensity | excess] for AU25 / AU26, from (N, NUM_CONTROLS) controls
    of the world's behaviour (speech excluded). ``noise``: std of the detector's opening error added to the
    excess (so the table is fitted on what the detector sees); empty bins are interpolated."""
    rng = rng or np.random.default_rng(0)
    c = np.asarray(controls, np.float64)
    a25, a26 = c[:, C.INDEX["au25"]], c[:, C.INDEX["au26"]]
    excess = np.clip(0.25 * a25 + 0.75 * a26 + rng.normal(0, noise, len(c)), 0.0, 1.0)
    grid = np.linspace(0.0, 1.0, bins)
    idx = np.clip(np.round(excess * (bins - 1)).astype(int), 0, bins - 1)
    out: dict = {"excess": [round(float(g), 4) for g in grid]}
    for au, a in ((25, a25), (26, a26)):
        for key, v in (("p", (a >= C.AU_ACTIVE_THRESHOLD).astype(np.float64)), ("mean", a)):
            cnt = np.bincount(idx, minlength=bins).astype(np.float64)
            sm = np.bincount(idx, weights=v, minlength=bins)
            ok = cnt >= 5
            col = np.interp(grid, grid[ok], sm[ok] / cnt[ok]) if ok.any() else np.zeros(bins)
            out[f"au{au}_{key}"] = [round(float(x), 4) for x in col]
    return out


@dataclass
class Evaluators:
    """The trained evaluator network plus its calibration; ``predict`` is batched and runs without grad."""

    net: EvaluatorNet
    intensity_thresholds: dict[str, list[float]] = field(default_factory=dict)
    mouth_au_table: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    batch_size: int = 256

    @property
    def cfg(self) -> EvaluatorConfig:
        return self.net.cfg

    @torch.no_grad()
    def predict_raw(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Per-frame network outputs, no context: (T, H, W, 3) uint8 -> dict of float32 arrays."""
        self.net.eval()
        outs: list[dict[str, torch.Tensor]] = []
        for i in range(0, len(frames), self.batch_size):
            outs.append(decode_outputs(self.net(frames_to_input(frames[i:i + self.batch_size], self.cfg))))
        if not outs:
            a = self.cfg.n_au
            return {k: np.zeros((0, w), np.float32) for k, w in (
                ("au_prob", a), ("au_intensity", a), ("pose", 3), ("mouth", 3), ("gaze", 2), ("eyes", 2))}
        return {k: torch.cat([o[k] for o in outs]).float().numpy() for k in outs[0]}

    def predict(self, frames: np.ndarray, speech_jaw: np.ndarray | None = None,
                temporal: bool = True) -> dict[str, np.ndarray]:
        """(T, H, W, 3) uint8 frames of one video -> au_prob (T, A), au_intensity (T, A), pose (T, 3) degrees
        yaw/pitch/roll, mouth (T, 3) opening/width/round, gaze (T, 2), eyes (T, 2). ``temporal``: the frames
        are consecutive (AU43 vs AU45 by duration); ``speech_jaw`` (T,): the audio's jaw track (AU25/26)."""
        pred = self.predict_raw(frames)
        if len(pred["au_prob"]) == 0:
            return pred
        if temporal:
            resolve_eye_aus(pred)
        if speech_jaw is not None and self.mouth_au_table:
            resolve_mouth_aus(pred, speech_jaw, self.mouth_au_table)
        return pred

    def save(self, path: str | Path, half: bool = True) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
              for k, v in self.net.state_dict().items()}
        meta = {"format": FORMAT, "config": json.dumps(asdict(self.cfg)), "au_ids": json.dumps(list(C.AU_IDS)),
                "intensity_thresholds": json.dumps(self.intensity_thresholds),
                "mouth_au_table": json.dumps(self.mouth_au_table), "info": json.dumps(self.info)}
        save_file(sd, str(path), metadata=meta)
        return path


def load_evaluators(path: str | Path | None = None, device: str = "cpu") -> Evaluators:
    """Load the shipped evaluator checkpoint (or ``path``) strictly; fp16 weights are cast to fp32."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else CHECKPOINT_DIR / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"evaluator checkpoint not found: {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an evaluator checkpoint (format {meta.get('format')!r})")
    if json.loads(meta["au_ids"]) != list(C.AU_IDS):
        raise ValueError(f"{path}: trained for AUs {meta['au_ids']}, the world has {list(C.AU_IDS)}")
    d = json.loads(meta["config"])
    cfg = EvaluatorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    net = EvaluatorNet(cfg)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    net.load_state_dict(sd, strict=True)
    net.to(device).eval()
    return Evaluators(net, json.loads(meta.get("intensity_thresholds", "{}")),
                      json.loads(meta.get("mouth_au_table", "{}")), json.loads(meta.get("info", "{}")))
