"""Data generation: deterministic, resumable shards, lazy reading, the CLI end to end, contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instructavatar.avatarworld import clips, dataset
from instructavatar.avatarworld.cli import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("speech"))


def cfg(out: Path, cache: str, **kw) -> dataset.GenerateConfig:
    base = dict(out=str(out), clips=5, seed=7, shard_size=2, speech_cache=cache)
    base.update(kw)
    return dataset.GenerateConfig(**base)


def shard_arrays(directory: Path) -> dict[str, np.ndarray | str]:
    out: dict = {}
    for shard in sorted(directory.glob("shard_*")):
        for f in sorted(shard.iterdir()):
            key = f"{shard.name}/{f.name}"
            out[key] = f.read_text() if f.suffix == ".json" else np.load(f)
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], str):
            assert a[k] == b[k], k
        else:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def generated(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("ds") / "a"
    manifest = dataset.generate(cfg(out, cache), progress=False)
    return out, manifest


def test_generate_layout_and_manifest(generated):
    out, manifest = generated
    assert manifest["complete"] and manifest["clips"] == 5 and manifest["num_shards"] == 3
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000", "shard_00001", "shard_00002"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert sum(on_disk["kinds"].values()) == 5
    assert on_disk["world_version"] == dataset.WORLD_VERSION and on_disk["seed"] == 7
    meta = json.loads((out / "shard_00002" / "meta.json").read_text())
    assert meta["first"] == 4 and meta["count"] == 1 and len(meta["instructions"]) == 1
    assert not list(out.glob(".tmp-*"))


def test_generation_deterministic_and_resumable(generated, tmp_path, cache):
    out, _ = generated
    again = tmp_path / "b"
    dataset.generate(cfg(again, cache), progress=False)
    assert_same(shard_arrays(out), shard_arrays(again))

    # interrupted after one shard (plus a stale temp dir of a crashed writer), then resumed
    resumed = tmp_path / "c"
    m = dataset.generate(cfg(resumed, cache), progress=False, limit_shards=1)
    assert not m["complete"] and len(list(resumed.glob("shard_*"))) == 1
    (resumed / ".tmp-shard_00001-999").mkdir()
    before = (resumed / "shard_00000" / "meta.json").stat().st_mtime_ns
    m = dataset.generate(cfg(resumed, cache), progress=False)
    assert m["complete"]
    assert (resumed / "shard_00000" / "meta.json").stat().st_mtime_ns == before  # skipped, not rewritten
    assert not list(resumed.glob(".tmp-*"))
    assert_same(shard_arrays(out), shard_arrays(resumed))

    # chunking does not matter: clip i is clip i whatever the shard size
    one = tmp_path / "d"
    dataset.generate(cfg(one, cache, shard_size=64), progress=False)
    ds_a, ds_b = dataset.ClipDataset(out), dataset.ClipDataset(one)
    for i in range(5):
        assert np.array_equal(ds_a[i].controls, ds_b[i].controls)
        assert np.array_equal(ds_a[i].audio, ds_b[i].audio)


def test_other_settings_refused(generated, cache):
    out, _ = generated
    with pytest.raises(ValueError, match="other settings"):
        dataset.generate(cfg(out, cache, seed=8), progress=False)


def test_dataset_reads_back_the_clips(generated, cache):
    out, _ = generated
    ds = dataset.ClipDataset(out)
    assert len(ds) == 5 and ds.complete
    for i in range(5):
        clip = ds[i]
        ref = clips.make_clip(clips.spec_for_index(7, i, "train"), cache_dir=cache)
        assert clip.spec == ref.spec == ds.spec(i)
        for key in ("audio", "controls", "au_frames", "au_clip", "target_aus", "keyframe"):
            assert np.array_equal(getattr(clip, key), getattr(ref, key)), key
        assert clip.frames is None and ds.n_frames(i) == clip.n_frames
    shard = out / "shard_00000"
    emo = np.load(shard / "emotion.npy")
    assert [clips.EMOTIONS[e] for e in emo] == [ds[i].spec.emotion for i in range(2)]
    assert np.array_equal(np.load(shard / "pose.npy"), np.concatenate([ds[0].pose, ds[1].pose]))
    with pytest.raises(IndexError):
        ds[5]


def test_store_frames_and_iter_frames(tmp_path, cache):
    out = tmp_path / "frames"
    dataset.generate(cfg(out, cache, clips=1, size=64, store_frames=True), progress=False)
    ds = dataset.ClipDataset(out)
    clip = ds[0]
    assert clip.frames is not None and clip.frames.shape == (clip.n_frames, 64, 64, 3)
    assert ds.keyframe_frame(0).shape == (64, 64, 3) and ds.keyframe_frame(0).any()
    rendered, lms = dataset.render_frames(dataset.ClipDataset(out, load_frames=False)[0], size=64)
    assert np.array_equal(rendered, clip.frames)  # stored == re-rendered
    _, stored_lms = dataset.render_frames(clip, size=64)  # landmark images from the stored landmarks
    assert np.array_equal(stored_lms, lms)
    assert lms.shape == rendered.shape and lms.dtype == np.uint8 and lms.any()
    frame, lm = next(dataset.iter_frames(clip, size=64, landmarks=False))
    assert frame.shape == (64, 64, 3) and lm is None


def test_cli_end_to_end(tmp_path, cache, capsys):
    out = tmp_path / "cli"
    args = ["generate", "--out", str(out), "--clips", "3", "--seed", "1", "--split", "heldout", "--quiet",
            "--speech-cache", cache]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["complete"] and summary["clips"] == 3
    ds = dataset.ClipDataset(out)
    assert len(ds) == 3 and all(ds.spec(i).split == "heldout" for i in range(3))
    assert main(args) == 0  # a rerun resumes: nothing to do, same data
    assert main(["info", str(out)]) == 0
    png = tmp_path / "clip.png"
    assert main(["show-clip", "--data", str(out), "--index", "1", "--size", "64", "--columns", "3",
                 "--out", str(png)]) == 0
    assert png.stat().st_size > 0


@pytest.mark.parametrize("kind", ["identities", "motions", "intensities"])
def test_sheets(tmp_path, kind):
    from PIL import Image

    png = tmp_path / f"{kind}.png"
    extra = ["--rows", "2"] if kind == "identities" else []
    assert main(["sheet", "--kind", kind, "--out", str(png), "--size", "48", *extra]) == 0
    img = Image.open(png)
    assert img.width > 4 * 48 and img.height > 2 * 48
