"""`--mode photo|world|auto`: which decoder animates a portrait.

world: the model's own VAE decoder (the portrait is repainted as a face of the demo's synthetic world).
photo: photo mode (engine/photo/decoder.py): the photograph itself, warped by the generator's motion.
auto:  photo when the portrait does not look like a world face (engine/media/image_io.looks_like_world_face)
       and a face is found in it; otherwise world. The choice is announced.
"""

from __future__ import annotations

MODES = ("auto", "photo", "world")
PHOTO_SIZES = ("256", "512", "full")


def check_mode(mode: str, photo_size: str) -> None:
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if str(photo_size) not in PHOTO_SIZES:
        raise ValueError(f"--photo-size must be one of {', '.join(PHOTO_SIZES)}, got {photo_size!r}")


def prepare_for_mode(pipeline, image, mode: str = "auto", photo_size: str = "512", say=print, warn=print):
    """(Portrait, the mode used). Photo-mode problems are PhotoError in `photo` mode; in `auto` they are
    announced and the world decoder is used."""
    from ..media.image_io import load_portrait, looks_like_world_face
    from .analysis import PhotoError

    check_mode(mode, photo_size)
    size = None if str(photo_size) == "full" else int(photo_size)
    if mode == "world":
        return pipeline.prepare(image), "world"
    if mode == "auto":
        if looks_like_world_face(load_portrait(image, pipeline.cfg.media.image_size)):
            say("mode auto: the portrait looks like a face of the synthetic world -> world decoder")
            return pipeline.prepare(image), "world"
    try:
        from .decoder import prepare_photo

        portrait = prepare_photo(pipeline, image, size=size)
    except (PhotoError, ImportError) as e:
        if mode == "photo":
            raise PhotoError(str(e).splitlines()[0]) from None
        warn(f"mode auto: photo mode cannot animate this portrait ({str(e).splitlines()[0]}); using the world "
             "decoder, which repaints it as a face of the synthetic world")
        return pipeline.prepare(image), "world"
    for w in portrait.decoder.analysis.warnings:
        warn(w)
    if mode == "auto":
        say("mode auto: the portrait is a photograph -> photo mode (the photo warped by the model's motion; "
            "--mode world for the model's own decoder)")
    return portrait, "photo"
