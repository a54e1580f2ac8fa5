"""Real photographs for photo mode's tests, demo and evaluation, read from registry packages at run time.

Nothing here is committed to the repository: each photo is read from the installed package that ships it and
cropped in code. Sources and licences:

| name       | package (file)                                      | who / licence                                     |
|------------|-----------------------------------------------------|---------------------------------------------------|
| astronaut  | scikit-image (skimage/data/astronaut.png)           | Eileen Collins, NASA portrait; public domain      |
| hopper     | matplotlib (mpl-data/sample_data/grace_hopper.jpg)  | Grace Hopper, US Navy portrait; public domain     |
| cameraman  | scikit-image (skimage/data/camera.png)              | 3/4 view, for the profile error case; skimage's   |
|            |                                                     | data licence (BSD-compatible, see its README)     |

`lfw_faces()` gives scikit-image's 25x25 LFW crops (too small: the error case for tiny faces).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np

PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png", "Eileen Collins (NASA, public domain) via scikit-image"),
    "hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
               "Grace Hopper (US Navy, public domain) via matplotlib"),
    "cameraman": ("skimage", "data/camera.png", "the cameraman via scikit-image (3/4 view)"),
}
FRONTAL = ("astronaut", "hopper")          # the photos photo mode animates (the evaluation's test set)


def photo_path(name: str) -> Path | None:
    """Where the installed package keeps photo `name`, or None when that package is not installed."""
    pkg, rel, _ = PHOTOS[name]
    spec = find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / rel
    return p if p.is_file() else None


def load_sample(name: str) -> np.ndarray:
    """Photo `name` as RGB uint8 (H, W, 3); FileNotFoundError naming the package when it is missing."""
    from PIL import Image

    if name not in PHOTOS:
        raise KeyError(f"unknown sample photo {name!r}; known: {', '.join(PHOTOS)}")
    p = photo_path(name)
    if p is None:
        raise FileNotFoundError(f"sample photo {name!r} needs the {PHOTOS[name][0]} package "
                                "(pip install 'instructavatar[photo]')")
    return np.asarray(Image.open(p).convert("RGB"))


def available(names=FRONTAL) -> list[str]:
    return [n for n in names if photo_path(n) is not None]


def lfw_faces() -> np.ndarray:
    """scikit-image's LFW subset faces, (N, 25, 25) float in [0, 1] (grey)."""
    from skimage.data import lfw_subset

    return lfw_subset()
