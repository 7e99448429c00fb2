"""Flip and pad-crop inside the step (data.augment_on): the host augmentation's pixels,
chosen as configured, carried through the pipeline and into the train step."""

import functools

import jax
import numpy as np
import pytest
from conftest import FAST_COMPILE

from agr_jax import models, tasks
from agr_jax.data import pipeline, tfds_builders
from agr_jax.train.device_augment import flip_pad_crop
from agr_jax.train.optim import make_optimizer
from agr_jax.train.state import create_train_state
from agr_jax.train.step import make_train_step

FLIP_CROP = pipeline.FLIP_CROP


@pytest.mark.parametrize("shape", [(12, 12), (9, 14)])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_device_pixels_equal_host_augmentation(flip, pad, shape):
    images = np.random.default_rng(2).integers(0, 255, (48, *shape, 3), dtype=np.uint8)
    aug = pipeline._validate_augment({"flip": flip, "pad_crop": pad})
    draws = pipeline.augment_draws(11, np.arange(300, 348))
    params = pipeline.flip_crop_params(draws, aug)
    assert params.dtype == np.int32 and params.shape == (48, 3)
    assert np.abs(params[:, 1:]).max() <= pad and (params[:, 0].any() == flip)
    host = pipeline.augment_batch(images.copy(), draws, aug)
    device = jax.jit(flip_pad_crop)(images, params)
    assert device.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(device), host)
    if flip or pad:
        assert not np.array_equal(host, images)  # the comparison can fail


@pytest.mark.parametrize(
    ("augment", "augment_on", "expected"),
    [
        ({"flip": True}, "auto", True),
        ({"pad_crop": 3}, "device", True),
        ({"flip": True, "pad_crop": 3}, "host", False),
        ({"flip": True, "rotate_deg": 5.0}, "auto", False),  # rotation comes before the crop
        ({"flip": True, "noise_std": 0.02}, "auto", False),
        ({}, "auto", False),  # nothing to move
        (None, "device", False),
    ],
)
def test_where_augmentation_runs(augment, augment_on, expected):
    assert pipeline.augments_on_device(augment, augment_on) is expected


def test_device_placement_refuses_host_only_augmentations():
    with pytest.raises(ValueError, match=r"augment_on='device'.*rotate_deg"):
        pipeline.augments_on_device({"flip": True, "rotate_deg": 5.0}, "device")
    with pytest.raises(ValueError, match="augment_on: expected one of"):
        pipeline.augments_on_device({"flip": True}, "gpu")


def test_pipeline_sends_unmoved_pixels_and_the_draws(synthetic_tfds):
    """The device stream's batches, augmented in the step, are the host stream's batches;
    its images are the unaugmented stream's (the host did not touch them)."""
    source = tfds_builders.load_split(synthetic_tfds, "train")
    aug = {"flip": True, "pad_crop": 3}
    kw = dict(image_size=20, batch_size=8, train=True, seed=4)

    def first(n, **extra):
        it = iter(pipeline.make_dataset(source, **kw, **extra))
        return [next(it) for _ in range(n)]

    device = first(3, augment=aug, augment_on="device")
    host = first(3, augment=aug, augment_on="host")
    plain = first(3, augment=None, augment_on="device")
    for d, h, p in zip(device, host, plain, strict=True):
        assert set(d) == {*h, FLIP_CROP} and FLIP_CROP not in h and FLIP_CROP not in p
        np.testing.assert_array_equal(d["image"], p["image"])
        np.testing.assert_array_equal(np.asarray(flip_pad_crop(d["image"], d[FLIP_CROP])),
                                      h["image"])
        for key in pipeline.LABEL_DTYPES:
            np.testing.assert_array_equal(d[key], h[key])
    evaluation = pipeline.make_dataset(source, image_size=20, batch_size=8, train=False,
                                       seed=4, augment=aug, augment_on="device")
    assert FLIP_CROP not in next(iter(evaluation))  # evaluation never augments


def test_train_step_augments_a_batch_that_carries_the_draws():
    spec = tasks.TaskSpec()
    model = models.build("ror", outputs=spec.output_sizes(), width=4, stage_sizes=(1,))
    tx = make_optimizer({"name": "adam", "learning_rate": 1e-3, "schedule": "constant"}, 10)
    state = create_train_state(model, tx, (16, 16, 3), seed=0, compiler_options=FAST_COMPILE)
    step = functools.partial(jax.jit, compiler_options=FAST_COMPILE)(
        make_train_step(model, tx, spec))
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8),
             "age": rng.uniform(1, 90, 6).astype(np.float32),
             "gender": rng.integers(0, 2, 6).astype(np.int32),
             "race": rng.integers(0, 5, 6).astype(np.int32)}
    aug = pipeline._validate_augment({"flip": True, "pad_crop": 2})
    draws = pipeline.augment_draws(1, np.arange(6))
    host = dict(batch, image=pipeline.augment_batch(batch["image"].copy(), draws, aug))
    device = dict(batch, **{FLIP_CROP: pipeline.flip_crop_params(draws, aug)})
    _, on_host = step(state, host)
    _, on_device = step(state, device)
    _, unaugmented = step(state, batch)
    np.testing.assert_allclose(float(on_device["loss"]), float(on_host["loss"]), rtol=1e-6)
    assert float(unaugmented["loss"]) != float(on_host["loss"])
