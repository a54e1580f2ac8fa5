"""`instructavatar train <step> ...`: the training steps, each its own resumable command."""

from __future__ import annotations

import sys

STEPS = {
    "vae": "Train the VAE on rendered frame pairs",
    "prepare": "Generate clips, landmark images and text embeddings for motion training",
    "latents": "Encode motion latents with the (frozen) VAE motion encoder",
    "motion": "Train the motion generator (audio encoder + denoiser)",
    "critic": "Train the decoder's AU critic (a perceptual loss for `train vae --au-critic`)",
    "probe": "Train the latent probe (motion latent -> AUs, pose, mouth) on ground-truth latents",
    "photo-head": "Train photo mode's geometry head (motion latent -> landmark displacements, pose)",
    "photo-quality": "Photo mode's evaluation with dlib (identity, lip sync, instructions, stability)",
    "package": "Combine VAE + motion states into the demo checkpoint",
    "quality": "Quality tables on held-out data (main, paraphrase, steps, streaming, ablations)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STEPS:
        print("usage: instructavatar train {" + ",".join(STEPS) + "} [options]", file=sys.stderr)
        for k, v in STEPS.items():
            print(f"  {k:8s} {v}", file=sys.stderr)
        return 2
    step, rest = argv[0], argv[1:]
    if step == "vae":
        from .train_vae import main as run
    elif step in ("prepare", "latents"):
        from .motion_data import main as data_main

        return data_main([step, *rest])
    elif step == "motion":
        from .train_motion import main as run
    elif step == "probe":
        from .latent_probe import main as run
    elif step == "critic":
        from .au_critic import main as run
    elif step == "quality":
        from .quality import main as run
    elif step == "photo-head":
        from .photo_head import main as run
    elif step == "photo-quality":
        from .photo_quality import main as run
    else:
        from .package import main as run
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
