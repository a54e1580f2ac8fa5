"""Model dimensions: one frozen dataclass per component, two named configurations.

`paper` has the published sizes (InstructAvatar, AAAI 2025, and the authors' training configs:
LDM-style KL VAE ch 256 x (1,2,4) with 8 res blocks, 12-block Conformer d 768, CLIP ViT-L/14 text,
wav2vec2 convolutional features + 4-layer audio Conformer). `demo` is the small model we train on the
synthetic world and ship; it runs faster than real time on a 2-core CPU.

Constructors take these dataclasses, never long keyword lists. `get_config(name)` selects one by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class MediaConfig:
    image_size: int = 256            # square RGB frames
    fps: int = 25
    sample_rate: int = 16000

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps    # 640 at 16 kHz / 25 fps


@dataclass(frozen=True)
class AutoencoderConfig:
    """One LDM-style convolutional encoder or decoder (ResNet blocks, GroupNorm, SiLU, no warping)."""

    in_channels: int                 # encoder: image channels; decoder: appearance + motion channels
    out_channels: int                # encoder: latent channels (KL mean; logvar doubles it); decoder: 3
    ch: int                          # base width
    ch_mult: tuple[int, ...]         # width multipliers per resolution level; downsampling = 2**(len-1)
    num_res_blocks: int              # per level (the decoder uses num_res_blocks + 1, as LDM does)
    norm_groups: int = 32
    mid_attention: bool = True       # self-attention in the middle block (LDM default)
    shuffle: int = 1                 # space-to-depth factor at the encoder input / depth-to-space at the
                                     # decoder output (pixel (un)shuffle): 2 runs a 128 px model at 64 px


@dataclass(frozen=True)
class VAEConfig:
    appearance: AutoencoderConfig    # RGB frame -> appearance latent (app_channels, S/f, S/f)
    motion: AutoencoderConfig        # landmark-dot image -> motion latent (motion_channels, m, m)
    decoder: AutoencoderConfig       # upsampled motion latent ++ appearance latent -> RGB frame
    landmark_size: int               # side of the landmark-dot image the motion encoder reads (with
                                     # landmark_points it only sets the motion latent's grid, motion_side)
    keyframe_ch: int                 # width of the small image -> motion latent head (keyframe from a portrait)
    warp: bool = False               # decoder also warps the portrait (latent and pixels) by a predicted flow
                                     # and blends the warped pixels in (our addition for the demo; vae.py)
    detail: bool = True              # with warp: the decoder also adds a zero-initialised detail image (vae.py);
                                     # a state without it behaves exactly as one with it at zero
    landmark_points: int = 0         # 0: the motion encoder reads the landmark-dot image (paper). N > 0: it reads
                                     # the N landmark coordinates (B, N, 2) through an MLP (demo; vae.py)
    point_hidden: int = 512          # width of that MLP

    @property
    def app_channels(self) -> int:
        return self.appearance.out_channels

    @property
    def motion_channels(self) -> int:
        return self.motion.out_channels

    @property
    def app_downsample(self) -> int:
        return self.appearance.shuffle * 2 ** (len(self.appearance.ch_mult) - 1)

    @property
    def appearance_channels(self) -> int:
        """Channels of the cached portrait state (the decoder's appearance input): the latent, plus with
        `warp` the portrait's pixels folded onto the latent grid (space-to-depth by app_downsample) and the
        portrait's own motion latent (keyframe encoder) upsampled onto it."""
        return self.app_channels + ((3 * self.app_downsample ** 2 + self.motion_channels) if self.warp else 0)

    @property
    def motion_input_shape(self) -> tuple[int, ...]:
        """Per-frame shape of what the motion encoder reads: the landmark-dot image (3, l, l) or the landmark
        coordinates (landmark_points, 2)."""
        return (self.landmark_points, 2) if self.landmark_points else (3, self.landmark_size, self.landmark_size)

    @property
    def motion_side(self) -> int:
        return self.landmark_size // (self.motion.shuffle * 2 ** (len(self.motion.ch_mult) - 1))

    @property
    def motion_dim(self) -> int:     # numbers per frame in a motion latent (768 in the paper)
        return self.motion_channels * self.motion_side ** 2


@dataclass(frozen=True)
class ConformerConfig:
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    kernel: int                      # depthwise convolution kernel (odd)
    dropout: float = 0.1


@dataclass(frozen=True)
class AudioConfig:
    frontend: str                    # "wav2vec2" (conv feature extractor, 512-d) or "logmel"
    feature_dim: int                 # 512 for wav2vec2, n_mels for logmel
    conformer: ConformerConfig       # 4-layer audio Conformer at 25 Hz (after a stride-2 Conv1d)
    n_fft: int = 512                 # logmel only
    win_length: int = 400            # logmel only (25 ms)
    hop_length: int = 320            # both front ends produce 50 Hz features (2 per video frame)
    blink_cue: bool = False          # a per-frame blink cue (engine/blinks.py) is projected (zero-initialised
                                     # Linear 1 -> width) and added to the audio features; off in `paper`


@dataclass(frozen=True)
class BlinkConfig:
    """The engine's idle-blink schedule (engine/blinks.py), used when `audio.blink_cue` is on. Human-like
    statistics: a blink every 2-6 s, 160-240 ms long (the synthetic world draws its idle blinks the same way)."""
    interval_s: tuple[float, float] = (2.0, 6.0)     # time between blink centres, uniform
    first_s: tuple[float, float] = (0.3, 3.5)        # centre of a session's first blink, uniform
    duration_s: tuple[float, float] = (0.16, 0.24)   # raised-cosine pulse length, uniform
    peak: tuple[float, float] = (0.9, 1.0)           # pulse height, uniform


@dataclass(frozen=True)
class TextConfig:
    kind: str                        # "clip" (ViT-L/14 text transformer) or "minilm" (all-MiniLM-L6-v2)
    width: int
    layers: int
    heads: int
    ffn_dim: int
    context: int                     # maximum tokens (77 for CLIP)
    vocab: int


@dataclass(frozen=True)
class AdapterConfig:
    """Two-or-more-layer MLP aligning a frozen encoder's space with the denoiser's (CLIP-Adapter style)."""

    hidden: int
    layers: int


@dataclass(frozen=True)
class DenoiserConfig:
    conformer: ConformerConfig       # 12 blocks, d 768, 12 heads, FFN 2048, kernel 13 in the paper
    emotion_adapter: AdapterConfig
    motion_adapter: AdapterConfig
    keyframe_adapter: AdapterConfig
    num_aus: int                     # AU head outputs (41 labels in the paper; the world renders 16)
    num_intensities: int = 3
    pose_dim: int = 3                # roll, pitch, yaw
    two_branch: bool = True          # False: one text cross-attention over all tokens (ablation)
    zero_gates: bool = True          # False: no zero-initialised gate (ablation)
    max_frames: int = 1024           # sinusoidal position table length


@dataclass(frozen=True)
class DiffusionConfig:
    train_steps: int = 1000          # discrete VP schedule (DDPM linear betas = VP SDE, beta 0.1..20)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    latent_scale: float = 4.0        # motion latents are divided by this before diffusion (authors: 4); the
                                     # demo's VAE normalises per dimension itself (VAE.motion_scale): 1
    sample_steps: int = 8            # default DDIM steps at inference
    eta: float = 0.0
    guidance: float = 1.0            # instruction guidance at inference (1 = off): the denoiser also runs with
                                     # the neutral default instruction and x0 = x0_neutral + g * (x0 - x0_neutral)


@dataclass(frozen=True)
class StreamConfig:
    chunk_frames: int                # new frames produced per chunk step
    prefix_frames: int               # previous motion held fixed as the window's prefix

    @property
    def window_frames(self) -> int:
        return self.prefix_frames + self.chunk_frames


@dataclass(frozen=True)
class ModelConfig:
    name: str
    media: MediaConfig
    vae: VAEConfig
    audio: AudioConfig
    text: TextConfig
    denoiser: DenoiserConfig
    diffusion: DiffusionConfig
    stream: StreamConfig
    max_audio_seconds: float = 600.0
    blinks: BlinkConfig = field(default_factory=BlinkConfig)
    extras: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def motion_dim(self) -> int:
        return self.vae.motion_dim

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> ModelConfig:
        return replace(self, **changes)


def _paper() -> ModelConfig:
    d = 768
    return ModelConfig(
        name="paper",
        media=MediaConfig(image_size=256, fps=25, sample_rate=16000),
        vae=VAEConfig(
            appearance=AutoencoderConfig(in_channels=3, out_channels=3, ch=256, ch_mult=(1, 2, 4), num_res_blocks=8),
            motion=AutoencoderConfig(in_channels=3, out_channels=3, ch=256, ch_mult=(1, 2, 4), num_res_blocks=8),
            decoder=AutoencoderConfig(in_channels=6, out_channels=3, ch=256, ch_mult=(1, 2, 4), num_res_blocks=8),
            landmark_size=64,                          # 669 landmarks as dots -> 3x16x16 = 768 per frame
            keyframe_ch=64,
        ),
        audio=AudioConfig(frontend="wav2vec2", feature_dim=512,
                          conformer=ConformerConfig(d_model=512, layers=4, heads=4, ffn_dim=1024, kernel=13)),
        text=TextConfig(kind="clip", width=768, layers=12, heads=12, ffn_dim=3072, context=77, vocab=49408),
        denoiser=DenoiserConfig(
            conformer=ConformerConfig(d_model=d, layers=12, heads=12, ffn_dim=2048, kernel=13),
            emotion_adapter=AdapterConfig(hidden=1024, layers=4),
            motion_adapter=AdapterConfig(hidden=1024, layers=4),
            keyframe_adapter=AdapterConfig(hidden=512, layers=4),
            num_aus=41,
        ),
        diffusion=DiffusionConfig(sample_steps=8),
        stream=StreamConfig(chunk_frames=25, prefix_frames=25),
    )


def _demo() -> ModelConfig:
    return ModelConfig(
        name="demo",
        media=MediaConfig(image_size=128, fps=25, sample_rate=16000),
        vae=VAEConfig(
            appearance=AutoencoderConfig(in_channels=3, out_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                         norm_groups=8, mid_attention=False, shuffle=2),
            motion=AutoencoderConfig(in_channels=3, out_channels=8, ch=16, ch_mult=(1, 2, 4, 4), num_res_blocks=1,
                                     norm_groups=8, mid_attention=False, shuffle=2),
            decoder=AutoencoderConfig(in_channels=16, out_channels=3, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                      norm_groups=8, mid_attention=False, shuffle=2),
            landmark_size=64,                          # -> 8x4x4 = 128 numbers per frame
            keyframe_ch=16,
            warp=True,                                 # the decoder warps the portrait (engine/modules/vae.py)
            landmark_points=129,                       # the world's landmarks as coordinates (engine/modules/vae.py)
        ),
        audio=AudioConfig(frontend="logmel", feature_dim=64,
                          conformer=ConformerConfig(d_model=128, layers=2, heads=4, ffn_dim=256, kernel=7),
                          blink_cue=True),
        text=TextConfig(kind="minilm", width=384, layers=6, heads=12, ffn_dim=1536, context=64, vocab=30522),
        denoiser=DenoiserConfig(
            conformer=ConformerConfig(d_model=192, layers=4, heads=4, ffn_dim=384, kernel=7),
            emotion_adapter=AdapterConfig(hidden=256, layers=2),
            motion_adapter=AdapterConfig(hidden=256, layers=2),
            keyframe_adapter=AdapterConfig(hidden=256, layers=2),
            num_aus=16,
        ),
        diffusion=DiffusionConfig(sample_steps=8, latent_scale=1.0, guidance=1.5),   # guidance: README "Quality"
        stream=StreamConfig(chunk_frames=10, prefix_frames=10),
        max_audio_seconds=600.0,
    )


CONFIGS = {"paper": _paper, "demo": _demo}


class ConfigError(ValueError):
    pass


def get_config(name: str) -> ModelConfig:
    """The named configuration ("paper" or "demo")."""
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; choose one of: {', '.join(CONFIGS)}") from None
