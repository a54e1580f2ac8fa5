"""Audio front ends: 16 kHz waveform (B, S) -> 50 Hz features (B, 2F, D), F = S // 640 video frames.

Two modules, both plain tensors in and out and ONNX-exportable (torch.onnx.export, dynamo=False, opset 17,
dynamic batch and sample axes): no torch.stft, no data-dependent Python control flow.

- `LogMelFrontend` (demo config): log-mel spectrogram. The STFT is a strided conv1d with a fixed
  windowed-DFT basis (periodic Hann window of `win_length` taps inside an `n_fft`-point frame).
- `Wav2Vec2FeatureExtractor` (paper config): the wav2vec2 / XLSR convolutional feature encoder (7 convs,
  512 channels, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2), GELU). Parameter names follow HF
  transformers' `Wav2Vec2FeatureEncoder`, so pretrained weights load with
  `load_wav2vec2_feature_weights` (fairseq names are mapped too).

Frame alignment contract
------------------------
Both front ends look at `receptive = 400` samples (25 ms) per feature frame with a hop of 320 samples
(20 ms): the log-mel through its 400-tap window, wav2vec2 through its conv stack (receptive field 400,
total stride 320). The input is zero-padded by (receptive - hop) / 2 = 40 samples on each side, so that

    feature frame j reads samples [320 j - 40, 320 j + 360) and is centred on sample 320 j + 160,

and an input of exactly S = 640 F samples gives exactly 2F frames (then sliced to 2 * (S // 640), a static
shape expression that traces). Frames 2k and 2k+1 are centred at 640 k + 160 and 640 k + 480: both lie in
video frame k's 640 samples, which is what the downstream stride-2 Conv1d expects. Padding the input to
a multiple of 640 is the caller's job (the pipeline pads with zeros); a remainder is dropped.

Zero padding means "silence before and after", which is what a streamed utterance really has at its start.

Streaming: every feature frame depends only on its own 400 samples, so the front end applied to a window
that starts at a multiple of 640 samples reproduces the whole-signal features exactly except for the first
and last frame of the window (the padded ones) -- for the log-mel and for wav2vec2 in "layer" mode.
Caution: wav2vec2-base's "group" mode (GroupNorm(512, 512) after the first conv, as in the paper's
wav2vec2-base features) normalises every channel over the *whole time axis*, so its features depend on
the window's statistics: windowed features only approximate whole-signal ones (closer for longer windows).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import AudioConfig
from .state_dict import state_dict_mismatch

SAMPLE_RATE = 16000
SAMPLES_PER_VIDEO_FRAME = 640           # 16 kHz / 25 fps
HOP = 320                               # 50 Hz features, two per video frame
RECEPTIVE = 400                         # samples seen by one feature frame (25 ms)
EDGE_PAD = (RECEPTIVE - HOP) // 2       # 40 zeros on each side


def _trim_to_video_frames(feats: torch.Tensor, num_samples) -> torch.Tensor:
    """(B, T, D) -> (B, 2 * (S // 640), D); `num_samples` comes from x.shape so that it traces."""
    return feats[:, : 2 * (num_samples // SAMPLES_PER_VIDEO_FRAME)]


# ----------------------------------------------------------------------------------------------- log-mel
def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HTK-mel triangular filters without area normalisation (torchaudio's default), (n_freqs, n_mels),
    and the filters' centre frequencies in Hz, (n_mels,)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    hz = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    up = (freqs[:, None] - lower[None]) / (centre - lower)[None]
    down = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    fb = np.maximum(0.0, np.minimum(up, down))
    return fb.astype(np.float32), centre


class LogMelFrontend(nn.Module):
    """(B, S) float32 16 kHz -> (B, 2 * (S // 640), n_mels) natural-log mel power at 50 Hz.

    power = |DFT_n_fft(hann_periodic(win_length) * frame)|^2, mel = power @ filterbank,
    out = log(max(mel, floor)). Frame j is centred on sample 320 j + 160 (see the module docstring).
    """

    def __init__(self, n_mels: int = 64, n_fft: int = 512, win_length: int = 400, hop_length: int = 320,
                 sample_rate: int = SAMPLE_RATE, f_min: float = 0.0, f_max: float | None = None,
                 log_floor: float = 1e-6):
        super().__init__()
        if hop_length != HOP or win_length != RECEPTIVE or sample_rate != SAMPLE_RATE:
            raise ValueError(f"the log-mel front end needs hop {HOP}, window {RECEPTIVE} and "
                             f"{SAMPLE_RATE} Hz "
                             f"(two feature frames per 25 fps video frame); got hop {hop_length}, "
                             f"window {win_length}, {sample_rate} Hz")
        if n_fft < win_length:
            raise ValueError(f"n_fft ({n_fft}) must be >= win_length ({win_length})")
        self.n_mels, self.n_fft, self.win_length, self.hop_length = n_mels, n_fft, win_length, hop_length
        self.log_floor = float(log_floor)
        n_freqs = n_fft // 2 + 1
        # The window sits centred in the n_fft frame (as torch.stft places it); only its taps are convolved.
        offset = (n_fft - win_length) // 2
        n = np.arange(win_length)
        window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / win_length)        # periodic Hann
        k = np.arange(n_freqs)[:, None]
        phase = 2.0 * math.pi * k * (n[None] + offset) / n_fft
        basis = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window], axis=0)  # (2K, win)
        self.register_buffer("dft_basis", torch.from_numpy(basis.astype(np.float32))[:, None, :],
                             persistent=False)
        fb, centres = mel_filterbank(n_freqs, n_mels, sample_rate, f_min, f_max)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)
        self.mel_centres_hz = centres

    @property
    def out_dim(self) -> int:
        return self.n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        num_samples = x.shape[-1]
        xp = F.pad(x.unsqueeze(1), (EDGE_PAD, EDGE_PAD))                   # (B, 1, S + 80)
        spec = F.conv1d(xp, self.dft_basis, stride=self.hop_length)        # (B, 2K, T)
        re_, im_ = spec.chunk(2, dim=1)
        power = (re_ * re_ + im_ * im_).transpose(1, 2)                    # (B, T, K)
        mel = torch.matmul(power, self.mel_fb)                             # (B, T, n_mels)
        feats = torch.log(torch.clamp(mel, min=self.log_floor))
        return _trim_to_video_frames(feats, num_samples)


# ---------------------------------------------------------------------------------------------- wav2vec2
W2V_KERNELS = (10, 3, 3, 3, 3, 2, 2)
W2V_STRIDES = (5, 2, 2, 2, 2, 2, 2)
W2V_DIM = 512


class _ConvLayer(nn.Module):
    """One conv of the feature encoder. norm: "group" (GroupNorm(C, C), i.e. per-channel over time),
    "layer" (LayerNorm over channels, per time step) or None."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class Wav2Vec2FeatureExtractor(nn.Module):
    """wav2vec2 convolutional feature encoder: (B, S) 16 kHz -> (B, 2 * (S // 640), 512) at 50 Hz.

    mode "group": wav2vec2-base (no conv bias, GroupNorm(512, 512) after the first conv only) -- the default.
    mode "layer": wav2vec2-large / XLSR-53 (conv bias, LayerNorm over channels after every conv).
    The waveform is used as given (no per-utterance zero-mean / unit-variance normalisation, which would
    make features depend on the whole window; the engine normalises loudness with audio_io instead).
    """

    def __init__(self, mode: str = "group", dim: int = W2V_DIM):
        super().__init__()
        if mode not in ("group", "layer"):
            raise ValueError(f"wav2vec2 feature extractor mode must be 'group' or 'layer', got {mode!r}")
        self.mode, self.dim = mode, dim
        bias = mode == "layer"
        layers = []
        for i, (k, s) in enumerate(zip(W2V_KERNELS, W2V_STRIDES)):
            norm = "layer" if mode == "layer" else ("group" if i == 0 else None)
            layers.append(_ConvLayer(1 if i == 0 else dim, dim, k, s, bias, norm))
        self.conv_layers = nn.ModuleList(layers)

    @property
    def out_dim(self) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        num_samples = x.shape[-1]
        h = F.pad(x.unsqueeze(1), (EDGE_PAD, EDGE_PAD))                    # (B, 1, S + 80)
        for layer in self.conv_layers:
            h = layer(h)
        return _trim_to_video_frames(h.transpose(1, 2), num_samples)       # (B, T, 512)


_PREFIXES = ("wav2vec2.feature_extractor.", "model.feature_extractor.",
             "w2v_encoder.w2v_model.feature_extractor.", "feature_extractor.")
# fairseq: conv_layers.{i}.0 = conv; group mode: conv_layers.0.2 = GroupNorm;
# layer mode: conv_layers.{i}.2.1 = LayerNorm (inside TransposeLast / Fp32LayerNorm / TransposeLast)
_FAIRSEQ = [(re.compile(r"^conv_layers\.(\d+)\.0\.(weight|bias)$"), r"conv_layers.\1.conv.\2"),
            (re.compile(r"^conv_layers\.(\d+)\.2\.1\.(weight|bias)$"), r"conv_layers.\1.layer_norm.\2"),
            (re.compile(r"^conv_layers\.(\d+)\.2\.(weight|bias)$"), r"conv_layers.\1.layer_norm.\2")]


def load_wav2vec2_feature_weights(module: Wav2Vec2FeatureExtractor, state_dict: dict) -> None:
    """Load a wav2vec2 checkpoint's feature-encoder weights into `module`, strictly.

    Accepts a whole model's state dict (HF `wav2vec2.feature_extractor.*`, fairseq `feature_extractor.*`)
    or the encoder's own; other keys are ignored once a prefix matched. Raises ValueError naming the
    missing / unexpected / mis-shaped keys.
    """
    own: dict[str, torch.Tensor] = {}
    for prefix in _PREFIXES:
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if own:
            break
    if not own:
        own = {k: v for k, v in state_dict.items() if k.startswith("conv_layers.")}
    if not own:
        raise ValueError("no wav2vec2 feature-extractor weights found (expected keys like "
                         "'wav2vec2.feature_extractor.conv_layers.0.conv.weight')")
    mapped = {}
    for k, v in own.items():
        for pattern, repl in _FAIRSEQ:
            if pattern.match(k):
                k = pattern.sub(repl, k)
                break
        mapped[k] = torch.as_tensor(v)
    problem = state_dict_mismatch(module.state_dict(), mapped, limit=4)
    if problem:
        hint = ""
        unexpected = set(mapped) - set(module.state_dict())
        if any("layer_norm" in k for k in unexpected) or any(k.endswith("conv.bias") for k in unexpected):
            hint = " (a 'layer'-mode checkpoint such as XLSR? build the extractor with mode='layer')"
        raise ValueError(f"wav2vec2 feature weights do not fit the {module.mode}-mode extractor: {problem}{hint}")
    module.load_state_dict(mapped, strict=True)


# ----------------------------------------------------------------------------------------------- factory
def build_audio_frontend(cfg: AudioConfig, sample_rate: int = SAMPLE_RATE) -> nn.Module:
    """The front end an AudioConfig names; its `out_dim` equals cfg.feature_dim."""
    if cfg.frontend == "logmel":
        return LogMelFrontend(n_mels=cfg.feature_dim, n_fft=cfg.n_fft, win_length=cfg.win_length,
                              hop_length=cfg.hop_length, sample_rate=sample_rate)
    if cfg.frontend in ("wav2vec2", "wav2vec2-group", "wav2vec2-layer", "xlsr"):
        if cfg.feature_dim != W2V_DIM:
            raise ValueError(f"the wav2vec2 front end gives {W2V_DIM}-d features; "
                             f"config says {cfg.feature_dim}")
        if cfg.hop_length != HOP or sample_rate != SAMPLE_RATE:
            raise ValueError(f"the wav2vec2 front end has a fixed hop of {HOP} samples at {SAMPLE_RATE} Hz")
        mode = "layer" if cfg.frontend in ("wav2vec2-layer", "xlsr") else "group"
        return Wav2Vec2FeatureExtractor(mode=mode)
    raise ValueError(f"unknown audio front end {cfg.frontend!r}; choose 'wav2vec2' or 'logmel'")
