"""Train a model: `python -m agr_jax.train --config configs/quickstart.py --workdir runs/q`.

Any config key can be overridden: `--config.batch_size=32 --config.model.name=ror`.
"""

from absl import app, flags
from ml_collections import config_flags

from agr_jax.cli import setup_logging
from agr_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, reports).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Discard the run already in --workdir (checkpoints, metrics) and start afresh; without "
    "it, a workdir holding a run with a different config is refused.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    setup_logging()
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == "__main__":
    app.run(main)
