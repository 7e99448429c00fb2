"""Parity figures of the keras and facenet importers: max |ours - reference| per backbone and
file layout, on the setups of tests/test_convert_keras.py and tests/test_convert_facenet.py
(random weights; the tests assert the bound, this prints the numbers docs/pretrained.md quotes).

    nice python -m benchmarks.importer_parity
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "numpy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import test_convert_facenet as facenet_case  # noqa: E402
import test_convert_keras as keras_case  # noqa: E402
import torch  # noqa: E402

from agr_jax import models  # noqa: E402
from agr_jax.convert import facenet  # noqa: E402
from agr_jax.convert import keras as keras_convert  # noqa: E402


def keras_rows(tmp: Path) -> None:
    for name, (app, size, _) in keras_case.CASES.items():
        model = getattr(keras.applications, app)(
            include_top=False, weights=None, input_shape=(size, size, 3)
        )
        rng = np.random.default_rng(0)
        keras_case.randomise(model, rng)
        x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
        ref = np.asarray(model(x))
        backbone = models.BACKBONES[name](conv_impl="xla")
        forward = jax.jit(lambda v, x, b=backbone: b.apply(v, x, train=False))
        for layout in ("keras3", "legacy"):
            variables = keras_convert.convert(name, keras_case.save(model, tmp / name, layout))
            diff = np.abs(np.asarray(forward(variables, x)) - ref).max()
            print(f"keras {name} {layout}: max|diff| {diff:.2e} (max|feature| "
                  f"{np.abs(ref).max():.2f})", flush=True)  # fmt: skip


def facenet_row() -> None:
    net = facenet_case.randomised_facenet()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 80, 80, 3)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x.transpose(0, 3, 1, 2) * facenet.PIXEL_SCALE_FIX)).numpy()
    backbone = models.BACKBONES["inception_resnet_v1"](embedding_size=512, conv_impl="xla")
    variables = facenet.convert_state_dict(net.state_dict())
    _, extra = jax.jit(lambda v, x: backbone.apply(v, x, train=False))(variables, x)
    print(f"facenet embedding: max|diff| {np.abs(np.asarray(extra['embedding']) - ref).max():.2e}")


if __name__ == "__main__":
    keras_rows(Path(tempfile.mkdtemp()))
    facenet_row()
