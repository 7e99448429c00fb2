"""Functional check of the TF.js importer on faceres: its own age and gender heads, fed by the
converted agr_jax `mobilenet` trunk, on real UTKFace crops (the whole 200 px crop resized to
224, or `--size`: what the trunk reads at a fine-tuning config's smaller input). A wrong
conversion reads chance (gender ~0.5, age r ~0).

    src=${XDG_CACHE_HOME:-$HOME/.cache}/agr_jax/human-3.3.6  # as agr_jax/convert/tfjs.py fetches
    nice python -m benchmarks.faceres_check --graph "$src/package/models/faceres.json" \
        --data_dir ../shared/utkface --n 500

Two paths are scored: the graph's weights as they are, fed each input convention tried (RGB
0..255, RGB [-1, 1], BGR 0..255; the one the graph expects reads far above chance), and the
converted file as training uses it (the converter's defaults `--input_range 0_255
--input_channels bgr` folded into the first conv, RGB uint8 input mapped to [-1, 1] inside
the model). The heads (`feats` 1024 -> 256 ReLU, `gender_pred` sigmoid = male, `age_pred`
softmax over 0..99 years, read as its expected value) are applied in numpy from the graph's
own weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from agr_jax import models
from agr_jax.convert import tfjs
from agr_jax.data.utkface import InvalidName, parse_name
from agr_jax.models.heads import normalize_pixels


def load_crops(data_dir: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every k-th crop in sorted order (deterministic, spread over the set): RGB uint8."""
    files = sorted(data_dir.glob("*.jpg"))
    if not files:
        raise SystemExit(f"--data_dir: no .jpg files in {data_dir}")
    images, ages, genders = [], [], []
    for path in files[:: max(1, len(files) // n)]:
        try:
            label = parse_name(path.name)
        except InvalidName:
            continue
        image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        images.append(np.asarray(image))
        ages.append(label.age)
        genders.append(label.gender)
        if len(images) == n:
            break
    return np.stack(images), np.array(ages), np.array(genders)


def faceres_heads(weights: dict[str, np.ndarray], pooled: np.ndarray):
    """(P(male), expected age in years) from the graph's own head weights."""
    hidden = np.maximum(pooled @ weights["feats/kernel"] + weights["feats/bias"], 0.0)
    gender_logit = (hidden @ weights["gender_pred/kernel"] + weights["gender_pred/bias"])[:, 0]
    age_logits = hidden @ weights["age_pred/kernel"] + weights["age_pred/bias"]
    probs = np.exp(age_logits - age_logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-gender_logit)), probs @ np.arange(probs.shape[1])


def score(p_male: np.ndarray, age_pred: np.ndarray, ages: np.ndarray, genders: np.ndarray):
    return {
        "gender_acc": float(np.mean((p_male > 0.5) == (genders == 0))),  # UTKFace 0 = male
        "age_r": float(np.corrcoef(age_pred, ages)[0, 1]),
        "age_mae": float(np.mean(np.abs(age_pred - ages))),
        "age_bias": float(np.mean(age_pred - ages)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", required=True, help="faceres.json (faceres.bin beside it)")
    parser.add_argument("--data_dir", default="../shared/utkface")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--size", type=int, default=224,
                        help="input side: the graph's 224, or a fine-tuning config's (112)")
    parser.add_argument("--converted_only", action="store_true",
                        help="score only the converted file as training uses it")
    args = parser.parse_args()

    graph = tfjs.read_graph_model(args.graph, tfjs.FACERES_SHA256)
    images, ages, genders = load_crops(Path(args.data_dir), args.n, args.size)
    options = tfjs.mobilenet_options(tfjs.conv_units(graph))
    backbone = models.BACKBONES["mobilenet"](conv_impl="xla", **options)
    pooled_fn = jax.jit(lambda v, x: backbone.apply(v, x, train=False).mean(axis=(1, 2)))

    def pooled(variables, transform):
        chunks = [
            np.asarray(pooled_fn(variables, transform(images[i : i + args.batch])))
            for i in range(0, len(images), args.batch)
        ]
        return np.concatenate(chunks)

    results = {"n": len(images), "graph": str(args.graph), "size": args.size}
    as_is = tfjs.convert(args.graph, input_range="as_is", input_channels="as_is")
    ranges = {
        "rgb_0_255": lambda x: x.astype(np.float32),
        "rgb_-1_1": lambda x: x.astype(np.float32) / 127.5 - 1.0,
        "bgr_0_255": lambda x: x[..., ::-1].astype(np.float32),
    }
    for name, transform in ({} if args.converted_only else ranges).items():
        start = time.perf_counter()
        results[f"graph_weights_{name}"] = score(
            *faceres_heads(graph.weights, pooled(as_is, transform)), ages, genders
        )
        results[f"graph_weights_{name}"]["seconds"] = round(time.perf_counter() - start, 1)
    folded = tfjs.convert(args.graph, input_range="0_255", input_channels="bgr")
    to_model = lambda x: normalize_pixels(jnp.asarray(x))  # uint8 -> [-1, 1], as in training
    results["converted_default_rgb_uint8"] = score(
        *faceres_heads(graph.weights, pooled(folded, to_model)), ages, genders
    )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
