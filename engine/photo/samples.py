"""Real photographs for photo mode's tests, demo and evaluation, read from registry packages, never committed.

Each photo is read from the package that ships it and cropped in code (photo mode crops around the face).
Two kinds of source:

- an installed package (scikit-image, matplotlib): read from its installed files;
- a source distribution fetched once, like an install step, into a cache folder (`fetch()`, or
  `python -m instructavatar.engine.photo.samples fetch`; `scripts/quickstart.sh test` does it): the
  `face_recognition==1.3.0` sdist from PyPI (MIT code; sha256 pinned below), whose tests/test_images/ hold White
  House photographs. The JPEGs are read straight out of the tar.gz (`tarfile`, nothing extracted); nothing is
  downloaded at run time or in a test. Cache: `$INSTRUCTAVATAR_SAMPLE_PHOTOS`, else
  `~/.cache/instructavatar/sample_photos`.

| name       | source (file)                                        | who / licence
|------------|------------------------------------------------------|---------------------------------------------------
| astronaut  | scikit-image (skimage/data/astronaut.png)            | Eileen Collins, NASA portrait; public domain
| hopper     | matplotlib (mpl-data/sample_data/grace_hopper.jpg)   | Grace Hopper, US Navy portrait; public domain
| obama      | face_recognition sdist (tests/test_images/obama.jpg) | Barack Obama, official White House portrait 2012
| obama2     | ... obama2.jpg (a speech, microphone before the chin)| Barack Obama, White House photograph
| obama3     | ... obama3.jpg (full length, Blue Room)              | Barack Obama, White House photograph
| biden      | ... biden.jpg (full length, arms crossed)            | Joe Biden, White House photograph
| cameraman  | scikit-image (skimage/data/camera.png)               | 3/4 view, for the profile error case; skimage's
|            |                                                      | data licence (BSD-compatible, see its README)

The White House photographs are works of US federal government employees made in their official duties, so
public domain in the US (17 U.S.C. 105); the sdist ships them without a licence statement of their own (its MIT
licence covers its code).

`lfw_faces()` gives scikit-image's 25x25 LFW crops (too small: the error case for tiny faces).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

CACHE_ENV = "INSTRUCTAVATAR_SAMPLE_PHOTOS"
SDIST = "face_recognition-1.3.0.tar.gz"          # pip download face_recognition==1.3.0 --no-binary :all:
SDIST_REQUIREMENT = "face_recognition==1.3.0"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
_SDIST_IMAGES = "face_recognition-1.3.0/tests/test_images/"
FETCH_COMMAND = "python -m instructavatar.engine.photo.samples fetch"


@dataclass(frozen=True)
class SamplePhoto:
    source: str        # an installed package's import name, or "sdist" (the cached face_recognition sdist)
    path: str          # the file inside the package or the sdist
    who: str           # who is in it, its origin and licence


PHOTOS = {
    "astronaut": SamplePhoto("skimage", "data/astronaut.png", "Eileen Collins (NASA, public domain) via scikit-image"),
    "hopper": SamplePhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                          "Grace Hopper (US Navy, public domain) via matplotlib"),
    "obama": SamplePhoto("sdist", _SDIST_IMAGES + "obama.jpg",
                         "Barack Obama, official White House portrait 2012 (US government work, public domain) "
                         "via the face_recognition 1.3.0 sdist"),
    "obama2": SamplePhoto("sdist", _SDIST_IMAGES + "obama2.jpg",
                          "Barack Obama speaking, a microphone before the chin (White House photograph, public "
                          "domain) via the face_recognition 1.3.0 sdist"),
    "obama3": SamplePhoto("sdist", _SDIST_IMAGES + "obama3.jpg",
                          "Barack Obama full length (White House photograph, public domain) via the "
                          "face_recognition 1.3.0 sdist"),
    "biden": SamplePhoto("sdist", _SDIST_IMAGES + "biden.jpg",
                         "Joe Biden full length (White House photograph, public domain) via the face_recognition "
                         "1.3.0 sdist"),
    "cameraman": SamplePhoto("skimage", "data/camera.png", "the cameraman via scikit-image (3/4 view)"),
}
# The photos photo mode animates: the evaluation's test set (women and men, light and dark skin).
FRONTAL = ("astronaut", "hopper", "obama", "obama2", "biden", "obama3")


def cache_dir() -> Path:
    """Where fetched sample archives live: $INSTRUCTAVATAR_SAMPLE_PHOTOS, else ~/.cache/instructavatar/..."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "instructavatar" / "sample_photos"


def sdist_path() -> Path | None:
    """The cached face_recognition sdist, or None when it has not been fetched."""
    p = cache_dir() / SDIST
    return p if p.is_file() else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(cache: Path | None = None, runner=subprocess.run) -> Path:
    """Download the face_recognition sdist from PyPI into the cache (an install step; a no-op when it is there).
    Checks its sha256; returns its path."""
    cache = cache_dir() if cache is None else Path(cache)
    target = cache / SDIST
    if target.is_file() and _sha256(target) == SDIST_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", SDIST_REQUIREMENT, "--no-deps", "--no-binary", ":all:",
           "--no-build-isolation", "-d", str(cache)]
    done = runner(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not target.is_file():
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"could not download {SDIST_REQUIREMENT} into {cache}: {tail[0]}")
    if _sha256(target) != SDIST_SHA256:
        target.unlink()
        raise RuntimeError(f"{SDIST} from PyPI does not have the expected sha256 {SDIST_SHA256[:12]}...; removed")
    return target


def read_from_archive(archive: Path, member: str) -> bytes:
    """One file's bytes out of a .tar.gz, without extracting anything; KeyError naming the member if absent."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            raise KeyError(f"{member} is not in {archive.name}") from None
        f = tar.extractfile(info)
        if f is None:
            raise KeyError(f"{member} in {archive.name} is not a regular file")
        return f.read()


def photo_path(name: str) -> Path | None:
    """Where photo `name` can be read from (the installed file, or the cached sdist), or None when it is absent."""
    s = PHOTOS[name]
    if s.source == "sdist":
        return sdist_path()
    spec = find_spec(s.source)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / s.path
    return p if p.is_file() else None


def missing_reason(name: str) -> str:
    """One line saying how to make photo `name` available."""
    s = PHOTOS[name]
    if s.source == "sdist":
        return (f"sample photo {name!r} is read from {SDIST} in {cache_dir()}, which is not there; fetch it with "
                f"`{FETCH_COMMAND}`")
    return f"sample photo {name!r} needs the {s.source} package (pip install 'instructavatar[photo]')"


def load_sample(name: str) -> np.ndarray:
    """Photo `name` as RGB uint8 (H, W, 3); FileNotFoundError saying how to get it when it is missing."""
    from PIL import Image

    if name not in PHOTOS:
        raise KeyError(f"unknown sample photo {name!r}; known: {', '.join(PHOTOS)}")
    p = photo_path(name)
    if p is None:
        raise FileNotFoundError(missing_reason(name))
    if PHOTOS[name].source == "sdist":
        return np.asarray(Image.open(io.BytesIO(read_from_archive(p, PHOTOS[name].path))).convert("RGB"))
    return np.asarray(Image.open(p).convert("RGB"))


def available(names=FRONTAL) -> list[str]:
    return [n for n in names if photo_path(n) is not None]


def lfw_faces() -> np.ndarray:
    """scikit-image's LFW subset faces, (N, 25, 25) float in [0, 1] (grey)."""
    from skimage.data import lfw_subset

    return lfw_subset()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m instructavatar.engine.photo.samples",
                                 description="Sample photos for photo mode's tests and evaluation.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help=f"download {SDIST_REQUIREMENT}'s sdist (White House photos) into the cache")
    sub.add_parser("list", help="the sample photos, their sources and whether each is available")
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        try:
            p = fetch()
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"sample photos: {p} ({', '.join(n for n, s in PHOTOS.items() if s.source == 'sdist')})")
        return 0
    for n, s in PHOTOS.items():
        print(f"{n:10s} {'yes' if photo_path(n) else 'no ':3s} {s.who}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
