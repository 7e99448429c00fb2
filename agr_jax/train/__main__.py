"""Train a model: `python -m agr_jax.train --config configs/quickstart.py --workdir runs/q`.

Any config key can be overridden: `--config.batch_size=32 --config.model.name=ror`.
Multi-host: `--distributed` (auto-detected under SLURM, Open MPI and on TPU pods) calls
`jax.distributed.initialize`; pass `--coordinator_address`, `--num_processes` and
`--process_id` where the platform does not provide them (docs/scaling.md).
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from agr_jax import host_memory
from agr_jax.cli import setup_logging
from agr_jax.train import parallel
from agr_jax.train.loop import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, reports).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Discard the run already in --workdir (checkpoints, metrics) and start afresh; without "
    "it, a workdir holding a run with a different config is refused.",
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    None,
    "Call jax.distributed.initialize (default: when SLURM/MPI/TPU-pod launch is detected).",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process' index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    host_memory.reuse_freed_memory()
    parallel.use_cpu_devices(int(_CONFIG.value.get("cpu_devices", 0)))
    distributed = _DISTRIBUTED.value
    if distributed is None:
        distributed = parallel.detect_distributed()
    if distributed:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    # Only process 0 logs progress; the others report warnings and errors.
    setup_logging(logging.INFO if jax.process_index() == 0 else logging.WARNING)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == "__main__":
    app.run(main)
