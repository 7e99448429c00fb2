"""Distillation (train/distill.py) and age balance (train/age_balance.py): the teacher cache
holds exactly what the teacher says of each record in each view, a train batch carries the
targets of the view it shows, and a tiny run learns the teacher's outputs."""

import numpy as np
import pytest

from agr_jax import evaluation, models, tasks
from agr_jax.data import pipeline, tfds_builders
from agr_jax.train import age_balance, distill

TEACHER_SIZE = 32


def _teacher_release(folder, images, seed=3):
    """A tiny random RoR release whose outputs differ from face to face: its logits scaled
    up and centred on `images` (a random net's raw outputs barely vary)."""
    import jax
    from conftest import CHEAP_COMPILE

    from agr_jax.inference.bundle import Bundle
    from agr_jax.inference.release import write_release

    spec = tasks.TaskSpec()
    options = dict(name="ror", width=4, stage_sizes=(1, 1), head_hidden=(16,), pooling="avg")
    model = models.build_from_config(options, spec.output_sizes())
    # Jitted (cheap XLA options): run eagerly, init and apply compiled ~100 one-op programs
    # (each initialiser and layer op per shape), ~20 s of the fixture; the values are random.
    init = jax.jit(lambda k, x: model.init(k, x, train=False), compiler_options=CHEAP_COMPILE)
    variables = jax.tree.map(np.asarray, init(jax.random.key(seed), images[:1]))
    heads = variables["params"]["head"]
    for task in heads:
        heads[task]["logits"]["kernel"] = heads[task]["logits"]["kernel"] * 10.0
    outputs, _ = jax.jit(lambda v, x: model.apply(v, x, train=False),
                         compiler_options=CHEAP_COMPILE)(variables, images)
    for task in heads:
        heads[task]["logits"]["bias"] = heads[task]["logits"]["bias"] - np.asarray(
            outputs[task]).mean(0)
    bundle = Bundle(model=options, task_spec=spec, image_size=TEACHER_SIZE,
                    gender_names=("male", "female"),
                    race_names=("White", "Black", "Asian", "Indian", "Others"),
                    variables=variables)
    write_release(bundle, folder, dtype=np.float32)
    return folder


def _train_images(tfds_dir, size):
    source = tfds_builders.load_split(tfds_dir, "train")
    return np.stack([pipeline.decode_image(source[i]["image"], size) for i in range(len(source))])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, synthetic_tfds):
    return _teacher_release(tmp_path_factory.mktemp("teacher"),
                            _train_images(synthetic_tfds, TEACHER_SIZE))


def _config(teacher_dir, tfds_dir, cache_dir, **overrides):
    from conftest import make_tiny_config

    config = make_tiny_config(**{"data.image_size": 16, "data.tfds_dir": str(tfds_dir),
                                 "distill.teacher": str(teacher_dir),
                                 "distill.shifts": ((0, 0), (2, -2)),
                                 "distill.cache_dir": str(cache_dir), **overrides})
    config.data.augment.update(rotate_deg=0.0, noise_std=0.0, pad_crop=2)
    return config


def test_views_are_every_shift_as_it_is_and_mirrored():
    views = distill.views_of(((0, 0), (-4, 4)))
    assert views.tolist() == [[0, 0, 0], [1, 0, 0], [0, -4, 4], [1, -4, 4]]
    with pytest.raises(ValueError, match="distill.shifts"):
        distill.views_of(((1, 2, 3),))


def test_teacher_cache_is_the_teachers_output_for_each_record_and_view(
        teacher, synthetic_tfds, tmp_path, monkeypatch, fast_jit):
    import jax

    from agr_jax.inference.release import read_release

    config = _config(teacher, synthetic_tfds, tmp_path)
    cached = distill.teacher_cache(config, synthetic_tfds)
    source = tfds_builders.load_split(synthetic_tfds, "train")
    assert cached.targets.shape == (len(source), 4, 2 + 5 + 1)
    assert cached.views.tolist() == [[0, 0, 0], [1, 0, 0], [0, 2, -2], [1, 2, -2]]

    bundle = read_release(teacher)
    model = bundle.build_model("float32")
    picks = [0, 7, len(source) - 1]
    images = np.stack([pipeline.decode_image(source[i]["image"], TEACHER_SIZE) for i in picks])
    # one program for the four views (run eagerly, each layer op compiled on its own)
    apply = fast_jit(lambda v, x: model.apply(v, x, train=False))
    for v, (flip, dy, dx) in enumerate(cached.views):
        # the student's (dy, dx) at 16 px is twice that at the teacher's 32 px
        view = evaluation.shifted_view(images, 2 * int(dy), 2 * int(dx), bool(flip))
        outputs, _ = apply(bundle.variables, view)
        expected = np.concatenate([
            np.asarray(jax.nn.log_softmax(outputs["gender"])),
            np.asarray(jax.nn.log_softmax(outputs["race"])),
            np.asarray(tasks.age_years(outputs["age"], bundle.task_spec))[:, None]], axis=1)
        np.testing.assert_allclose(cached.targets[picks, v], expected, rtol=1e-5, atol=1e-4)
    # the views differ (the comparison above can tell them apart)
    assert np.abs(cached.targets[:, 0] - cached.targets[:, 1]).max() > 1e-2

    # a second run reads the file; another view set is another file
    class Recomputed(Exception):
        pass

    def recompute(*args, **kwargs):
        raise Recomputed

    monkeypatch.setattr(distill, "teacher_targets", recompute)
    again = distill.teacher_cache(config, synthetic_tfds)
    np.testing.assert_array_equal(again.targets, cached.targets)
    config.distill.shifts = ((0, 0),)
    with pytest.raises(Recomputed):
        distill.teacher_cache(config, synthetic_tfds)


def test_train_batches_carry_the_targets_of_the_view_they_show():
    rng = np.random.default_rng(0)
    views = distill.views_of(((0, 0), (1, -1), (-1, 1)))
    targets = rng.normal(size=(20, len(views), 8)).astype(np.float32)
    source = [{"image": b"", "age": 1.0, "gender": 0, "race": 0} for _ in range(20)]
    ds = pipeline.make_dataset(source, image_size=8, batch_size=5, train=True, seed=1,
                               augment={"flip": True}, augment_on="auto", rows_only=True,
                               num_epochs=3,
                               view_targets=pipeline.ViewTargets(views, targets))
    seen = set()
    for batch in ds:
        for row, flip_crop, teacher in zip(batch[pipeline.ROWS], batch[pipeline.FLIP_CROP],
                                           batch[pipeline.TEACHER], strict=True):
            v = [i for i, view in enumerate(views) if (view == flip_crop).all()]
            assert len(v) == 1
            np.testing.assert_array_equal(teacher, targets[row, v[0]])
            seen.add(v[0])
    assert seen == set(range(len(views)))  # every view gets drawn


def test_tiny_distillation_run_learns_the_teachers_outputs(teacher, synthetic_tfds, tmp_path):
    import jax

    from agr_jax.inference.load import load_workdir
    from agr_jax.train.loop import train_and_evaluate

    config = _config(teacher, synthetic_tfds, tmp_path / "cache", **{
        "distill.alpha": 1.0, "distill.age_alpha": 1.0, "distill.temperature": 1.0,
        "num_epochs": 0, "total_steps": 60, "optimizer.learning_rate": 3e-3})
    train_and_evaluate(config, tmp_path / "run")
    cached = distill.teacher_cache(config, synthetic_tfds)
    student = load_workdir(tmp_path / "run", "latest")
    images = _train_images(synthetic_tfds, 16)
    outputs, _ = student.build_model("float32").apply(student.variables, images, train=False)
    teacher0 = cached.targets[:, 0]  # view 0: the crop as it is
    shuffled = teacher0[np.random.default_rng(0).permutation(len(teacher0))]

    def kl(t):  # gender and race, teacher || student
        out = 0.0
        for task, cols in (("gender", slice(0, 2)), ("race", slice(2, 7))):
            s = np.asarray(jax.nn.log_softmax(outputs[task]))
            out += np.mean(np.sum(np.exp(t[:, cols]) * (t[:, cols] - s), axis=1))
        return out

    age = np.asarray(tasks.age_years(outputs["age"], student.task_spec))
    # learned per face: far closer to its own face's teacher outputs than to another face's
    assert kl(teacher0) < 0.6 * kl(shuffled)
    assert np.mean(np.abs(age - teacher0[:, 7])) < 0.6 * np.mean(np.abs(age - shuffled[:, 7]))


def test_age_weights_lift_rare_ages_and_average_one():
    ages = np.concatenate([np.full(900, 30.0), np.full(90, 70.0), np.full(10, 95.0)])
    w = age_balance.age_weights(ages, 116.0, "sqrt_inv", sigma=0.0, cap=100.0)
    assert w.shape == (117,)
    assert np.mean(w[ages.astype(int)]) == pytest.approx(1.0, rel=1e-5)
    assert w[95] > w[70] > w[30]
    assert w[70] / w[30] == pytest.approx(np.sqrt(10), rel=1e-4)  # 1 / sqrt(frequency)
    assert age_balance.age_weights(ages, 116.0, "sqrt_inv", sigma=0.0, cap=5.0).max() == 5.0
    smoothed = age_balance.age_weights(ages, 116.0, "sqrt_inv", sigma=3.0, cap=100.0)
    # an age no face has borrows its neighbours' frequency instead of the cap
    assert w[94] == 100.0 and smoothed[94] < 1.2 * smoothed[95]
    capped = age_balance.age_weights(ages, 116.0, "inv", sigma=0.0, cap=2.0)
    assert capped.max() == pytest.approx(2.0)
    assert age_balance.age_weights(ages, 116.0, "none") is None
    with pytest.raises(ValueError, match="tasks.age_balance"):
        age_balance.age_weights(ages, 116.0, "inverse")
    np.testing.assert_allclose(np.asarray(age_balance.weight_of(np.array([30.2, 69.6]), w)),
                               [w[30], w[70]])
