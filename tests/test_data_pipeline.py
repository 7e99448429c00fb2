"""grain pipeline: shapes, determinism, resumable state, sharding, multi-worker."""

import numpy as np
import pytest

from agr_jax.data import pipeline, tfds_builders

AUG = {"flip": True, "rotate_deg": 10.0, "pad_crop": 2, "noise_std": 0.02}


@pytest.fixture(scope="module")
def train_source(synthetic_tfds):
    return tfds_builders.load_split(synthetic_tfds, "train")


def _take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_shapes_and_dtypes(train_source):
    ds = pipeline.make_dataset(train_source, image_size=32, batch_size=8, train=True,
                               seed=0, augment=AUG)
    batch = _take(ds, 1)[0]
    assert set(batch) == {"image", "age", "gender", "race"}
    # uint8 to the device: the model normalises (models.heads.normalize_pixels).
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["age"].dtype == np.float32 and batch["gender"].dtype == np.int32
    assert batch["race"].dtype == np.int32 and batch["age"].shape == (8,)
    assert batch["image"].max() > batch["image"].min()


def test_eval_images_are_the_decoded_pixels_and_metadata(train_source):
    ds = pipeline.make_dataset(train_source, image_size=24, batch_size=5, train=False,
                               seed=0, with_metadata=True)
    batch = _take(ds, 1)[0]
    for i in range(5):
        expected = pipeline.decode_image(train_source[i]["image"], 24)
        np.testing.assert_array_equal(batch["image"][i], expected)
    assert batch["file_name"].shape == (5,) and batch["file_name"].dtype.kind == "U"


def test_deterministic_for_seed(train_source):
    kw = dict(image_size=32, batch_size=8, train=True, augment=AUG)
    a = _take(pipeline.make_dataset(train_source, seed=3, **kw), 4)
    b = _take(pipeline.make_dataset(train_source, seed=3, **kw), 4)
    c = _take(pipeline.make_dataset(train_source, seed=4, **kw), 4)
    assert all(_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(_equal(x, y) for x, y in zip(a, c, strict=True))


def test_epochs_cover_data_and_reshuffle(train_source):
    n = len(train_source)
    ds = pipeline.make_dataset(train_source, image_size=16, batch_size=n, train=True,
                               seed=0, with_metadata=True)
    e1, e2 = (list(b["file_name"]) for b in _take(ds, 2))
    assert sorted(e1) == sorted(e2) == sorted({train_source[i]["file_name"] for i in range(n)})
    assert e1 != e2


def test_state_restore_resumes_exactly(train_source):
    ds = pipeline.make_dataset(train_source, image_size=32, batch_size=8, train=True,
                               seed=1, augment=AUG)
    it = iter(ds)
    for _ in range(15):  # crosses an epoch boundary (96 train examples / 8)
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    fresh = iter(ds)
    fresh.set_state(state)
    assert all(_equal(x, next(fresh)) for x in expected)


def test_eval_single_pass_no_drop(train_source):
    ds = pipeline.make_dataset(train_source, image_size=16, batch_size=7, train=False,
                               seed=0, with_metadata=True)
    batches = list(ds)
    names = [n for b in batches for n in b["file_name"]]
    assert names == [train_source[i]["file_name"] for i in range(len(train_source))]
    assert len(batches[-1]["age"]) == len(train_source) % 7 or len(train_source) % 7 == 0


def test_sharding_partitions(train_source):
    def names(index):
        ds = pipeline.make_dataset(train_source, image_size=16, batch_size=4, train=False,
                                   seed=0, shard_index=index, shard_count=3,
                                   with_metadata=True)
        return [n for b in ds for n in b["file_name"]]

    shards = [names(i) for i in range(3)]
    flat = [n for s in shards for n in s]
    assert len(flat) == len(set(flat)) == len(train_source)


def test_train_shards_are_rows_of_the_global_batch(train_source):
    """Process p of n gets rows [p*b, (p+1)*b) of every global batch, across epoch ends, and
    its `next_index` after s batches is s: the same data whatever the process count."""
    kw = dict(image_size=16, train=True, seed=0, augment=AUG)
    steps = len(train_source) // 8 + 3  # past an epoch boundary
    whole = _take(pipeline.make_dataset(train_source, batch_size=12, **kw), steps)
    iters = [iter(pipeline.make_dataset(train_source, batch_size=4, shard_index=i,
                                        shard_count=3, **kw)) for i in range(3)]
    for batch in whole:
        parts = [next(it) for it in iters]
        assert all(np.array_equal(batch[k], np.concatenate([p[k] for p in parts]))
                   for k in batch)
    assert iters[1].get_state() == {"next_index": steps}


def test_two_workers_lose_nothing_and_match_single_process(train_source):
    kw = dict(image_size=16, batch_size=5, train=False, seed=0, with_metadata=True)
    single = list(pipeline.make_dataset(train_source, **kw))
    multi = list(pipeline.make_dataset(train_source, worker_count=2, **kw))
    names = [n for b in multi for n in b["file_name"]]
    assert sorted(names) == sorted(train_source[i]["file_name"]
                                   for i in range(len(train_source)))
    assert len(single) == len(multi) and all(
        _equal(a, b) for a, b in zip(single, multi, strict=True))
    # Training stream with augmentation: identical with and without workers; resumable.
    tkw = dict(image_size=16, batch_size=8, train=True, seed=2, augment=AUG)
    ref = _take(pipeline.make_dataset(train_source, **tkw), 3)
    ds = pipeline.make_dataset(train_source, worker_count=2, **tkw)
    it = iter(ds)
    got = [next(it) for _ in range(2)]
    state = it.get_state()
    it.close()
    assert all(_equal(a, b) for a, b in zip(ref[:2], got, strict=True))
    resumed = iter(ds)
    resumed.set_state(state)
    assert _equal(ref[2], next(resumed))
    resumed.close()


def test_decode_scales_and_fallback():
    import io

    import simplejpeg
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    jpeg = simplejpeg.encode_jpeg(img, quality=90)
    assert pipeline.decode_image(jpeg, 64).shape == (64, 64, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    out = pipeline.decode_image(buf.getvalue(), 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8


def test_bad_arguments(train_source):
    with pytest.raises(ValueError, match="unknown augment"):
        pipeline.make_dataset(train_source, image_size=16, batch_size=4, train=True,
                              seed=0, augment={"flop": True})
    with pytest.raises(ValueError):
        pipeline.make_dataset(train_source, image_size=16, batch_size=4, train=True,
                              seed=0, shard_index=2, shard_count=2)


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_augment_batch_equals_flip_pad_crop(flip, pad, contiguous):
    """The batched augmentation gives exactly flip -> np.pad(reflect) -> crop, with the
    flip and offsets its hash draws name (also into a batch that is a strided view)."""
    images = np.random.default_rng(1).integers(0, 255, (40, 12, 12, 3), dtype=np.uint8)
    aug = pipeline._validate_augment({"flip": flip, "pad_crop": pad})
    draws = pipeline.augment_draws(7, np.arange(100, 140))
    u = pipeline._unit(draws)
    target = images.copy() if contiguous else np.zeros((40, 12, 12, 4), np.uint8)[..., :3]
    target[...] = images
    got = pipeline.augment_batch(target, draws, aug)
    assert got is target
    flips = 0
    for i, img in enumerate(images):
        do_flip = flip and u[i, 0] < 0.5
        flips += do_flip
        oy, ox = (int(v * (2 * pad + 1)) for v in u[i, 2:4])
        ref = img[:, ::-1] if do_flip else img
        ref = np.pad(ref, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")[
            oy : oy + 12, ox : ox + 12
        ]
        np.testing.assert_array_equal(got[i], ref)
    assert (0 < flips < 40) if flip else flips == 0


def test_augment_draws_are_a_function_of_seed_and_position():
    a = pipeline.augment_draws(3, np.arange(10, 20))
    np.testing.assert_array_equal(a[4:], pipeline.augment_draws(3, np.arange(14, 20)))
    assert not np.array_equal(a, pipeline.augment_draws(4, np.arange(10, 20)))
    u = pipeline._unit(pipeline.augment_draws(0, np.arange(20000)))
    assert u.shape == (20000, pipeline.NUM_DRAWS) and 0 <= u.min() and u.max() < 1
    np.testing.assert_allclose(u.mean(axis=0), 0.5, atol=0.01)  # uniform, every column
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03  # draws are not correlated


def test_batched_reads_match_single_reads(train_source):
    indices = [5, 0, 17, 5]
    assert pipeline.read_records(train_source, indices) == [train_source[i] for i in indices]


def test_column_reads_match_records(train_source):
    indices = [5, 0, 17, 5]
    keys = ["image", "age", "gender", "race", "file_name"]
    records = [train_source[i] for i in indices]
    columns = pipeline.read_columns(train_source, indices, keys)
    assert columns["image"] == [r["image"] for r in records]
    for key in ("age", "gender", "race"):
        assert [int(v) for v in columns[key]] == [int(r[key]) for r in records]
    assert columns["file_name"] == [r["file_name"] for r in records]  # str, as in records
    # A source without a column read (a plain list of records) goes through read_records.
    assert pipeline.read_columns(records, [1, 2], ["age"]) == {
        "age": [records[1]["age"], records[2]["age"]]
    }


def test_augment_batch_rotation_without_crop_is_pils_rotation():
    from PIL import Image

    images = np.random.default_rng(2).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    aug = pipeline._validate_augment({"rotate_deg": 20.0})
    draws = pipeline.augment_draws(1, np.arange(6))
    angles = (2.0 * pipeline._unit(draws)[:, 1] - 1.0) * 20.0
    got = pipeline.augment_batch(images.copy(), draws, aug)
    for i in range(6):
        ref = np.asarray(Image.fromarray(images[i]).rotate(
            float(angles[i]), resample=Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(got[i], ref)
    assert not np.array_equal(got, images)


def test_index_batches_are_epochs_of_permutations_split_by_process():
    n, b = 10, 4
    one = pipeline.ShuffledIndexBatches(n, b, seed=3)
    stream = np.concatenate([one[k] for k in range(10)])  # 40 positions = 4 epochs
    epochs = stream.reshape(4, n)
    assert all(sorted(e) == list(range(n)) for e in epochs)  # each epoch covers every record
    assert len({tuple(e) for e in epochs}) == 4  # reshuffled every epoch
    np.testing.assert_array_equal(epochs[1], one.permutation(1))
    # Two processes: process p holds rows [p * b, (p + 1) * b) of each global batch of 2b.
    procs = [pipeline.ShuffledIndexBatches(n, b, 3, shard_index=p, shard_count=2) for p in (0, 1)]
    merged = np.concatenate([np.concatenate([procs[0][k], procs[1][k]]) for k in range(5)])
    np.testing.assert_array_equal(merged, stream)
    # Finite epochs: 2 epochs = 20 positions -> 5 full batches; two processes without
    # dropping the remainder share the 5 blocks of 4 (3 + 2); with it, 2 global batches.
    assert len(pipeline.ShuffledIndexBatches(n, b, 3, num_epochs=2)) == 5
    short = [pipeline.ShuffledIndexBatches(n, b, 3, num_epochs=2, shard_index=p, shard_count=2,
                                           drop_remainder=False) for p in (0, 1)]
    assert [len(s) for s in short] == [3, 2]
    dealt = [short[k % 2][k // 2] for k in range(5)]
    np.testing.assert_array_equal(np.concatenate(dealt), stream[:20])
    odd = pipeline.ShuffledIndexBatches(n, 3, 3, num_epochs=1, drop_remainder=False)
    assert [len(odd[k]) for k in range(len(odd))] == [3, 3, 3, 1]
    assert len(pipeline.ShuffledIndexBatches(n, b, 3, num_epochs=2, shard_count=2)) == 2
    with pytest.raises(IndexError, match="out of range"):
        pipeline.ShuffledIndexBatches(n, b, 3, num_epochs=2)[5]
    # Workers get a pickled copy: it must give the same batches.
    import pickle

    clone = pickle.loads(pickle.dumps(one))
    np.testing.assert_array_equal(clone[7], one[7])
    assert not np.array_equal(pipeline.ShuffledIndexBatches(n, b, seed=4)[0], one[0])
