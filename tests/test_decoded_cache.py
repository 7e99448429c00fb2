"""Decoded cache: the same batches as decoding every epoch, built once, rebuilt when stale."""

import json
import pickle
import shutil

import numpy as np
import pytest

from agr_jax.data import decoded_cache, pipeline, tfds_builders

AUG = {"flip": True, "rotate_deg": 10.0, "pad_crop": 2, "noise_std": 0.02}


@pytest.fixture()
def tfds_copy(synthetic_tfds, tmp_path):
    """A private copy of the shared build: the cache writes inside the build directory."""
    out = tmp_path / "tfds"
    shutil.copytree(synthetic_tfds, out)
    return out


def _batches(source, n, **kw):
    it = iter(pipeline.make_dataset(source, **kw))
    return [next(it) for _ in range(n)]


def _same(a, b):
    return all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
               for x, y in zip(a, b, strict=True))


def test_cached_batches_equal_decoded_batches(tfds_copy):
    source = tfds_builders.load_split(tfds_copy, "train")
    cached = decoded_cache.maybe_cached(source, tfds_copy, "train", 24, max_gb=1.0)
    assert isinstance(cached, decoded_cache.DecodedSource) and len(cached) == len(source)
    train = dict(image_size=24, batch_size=16, train=True, seed=5, augment=AUG)
    steps = 2 * len(source) // 16 + 1  # more than one epoch: reshuffled, re-augmented
    assert _same(_batches(cached, steps, **train), _batches(source, steps, **train))
    evaluation = dict(image_size=24, batch_size=7, train=False, seed=0, with_metadata=True)
    n = -(-len(source) // 7)
    assert _same(_batches(cached, n, **evaluation), _batches(source, n, **evaluation))
    assert cached[3]["image"] == source[3]["image"]  # records themselves stay JPEG


def test_built_once_then_reused_and_rebuilt_when_stale(tfds_copy, monkeypatch):
    source = tfds_builders.load_split(tfds_copy, "validation")
    decoded_cache.maybe_cached(source, tfds_copy, "validation", 16, max_gb=1.0)
    directory = decoded_cache.cache_dir(tfds_copy, "validation", 16)
    meta = json.loads((directory / decoded_cache.META_FILE).read_text())
    assert meta["count"] == len(source) and meta["image_size"] == 16

    builds = []
    real_build = decoded_cache.build
    monkeypatch.setattr(decoded_cache, "build",
                        lambda *a, **k: builds.append(a[2]) or real_build(*a, **k))
    decoded_cache.maybe_cached(source, tfds_copy, "validation", 16, max_gb=1.0)
    assert builds == []  # complete and current: reused
    decoded_cache.maybe_cached(source, tfds_copy, "validation", 20, max_gb=1.0)
    assert builds == [20]  # another size: its own cache
    (directory / decoded_cache.META_FILE).write_text(json.dumps({**meta, "build": "old"}))
    cached = decoded_cache.maybe_cached(source, tfds_copy, "validation", 16, max_gb=1.0)
    assert builds == [20, 16]  # the prepared build changed: rebuilt
    expected = pipeline.decode_batch([source[i]["image"] for i in range(len(source))], 16)
    assert np.array_equal(cached.images, expected)
    assert not list(directory.parent.glob("*.tmp*"))


def test_off_when_it_does_not_fit_or_is_disabled(tfds_copy):
    source = tfds_builders.load_split(tfds_copy, "train")
    need_gb = decoded_cache.decoded_bytes(len(source), 32) / 2**30
    assert decoded_cache.maybe_cached(source, tfds_copy, "train", 32, max_gb=need_gb / 2) is source
    assert decoded_cache.maybe_cached(source, tfds_copy, "train", 32, max_gb=0) is source
    assert not decoded_cache.cache_dir(tfds_copy, "train", 32).exists()


def test_size_mismatch_and_pickling(tfds_copy):
    source = tfds_builders.load_split(tfds_copy, "validation")
    cached = decoded_cache.maybe_cached(source, tfds_copy, "validation", 16, max_gb=1.0)
    with pytest.raises(ValueError, match="decoded at 16 px.*image_size=24"):
        pipeline.make_dataset(cached, image_size=24, batch_size=4, train=False, seed=0)
    assert cached.images.shape[1:] == (16, 16, 3)  # mapped here; workers get the path only
    copy = pickle.loads(pickle.dumps(cached))
    assert copy._images is None
    rows = [4, 0, 2]
    ours, theirs = (c.read_columns(rows, ["image", "age", "file_name"]) for c in (cached, copy))
    assert np.array_equal(ours["image"], theirs["image"]) and ours["image"].flags.writeable
    assert list(ours["file_name"]) == [source[i]["file_name"] for i in rows]
    assert np.array_equal(ours["age"], [source[i]["age"] for i in rows])


def test_undecodable_image_names_its_file(tmp_path):
    records = [{"image": b"not a jpeg", "age": 30, "gender": 0, "race": 1,
                "file_name": "30_0_1_broken.jpg"}]
    with pytest.raises(ValueError, match=r"record 0 \(30_0_1_broken.jpg\): cannot decode"):
        decoded_cache.build(records, tmp_path / "cache", 16, {"count": 1})
    assert list(tmp_path.iterdir()) == []  # neither the cache nor its half-written build
