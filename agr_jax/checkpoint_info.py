"""Describe a run's checkpoint as JSON: `python -m agr_jax.checkpoint_info --workdir W`.

Prints step, best validation metric, parameter count, config name and `params_sha256` (a
digest over every parameter array in sorted path order: equal digests, identical weights).
"""

import json

from absl import app, flags, logging

from agr_jax.cli import setup_logging
from agr_jax.train.checkpoint import describe

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "Which checkpoint.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    setup_logging(logging.WARNING)
    print(json.dumps(describe(_WORKDIR.value, _CHECKPOINT.value), indent=2))


if __name__ == "__main__":
    app.run(main)
