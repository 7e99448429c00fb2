"""Seed 000's recipe: Keras Xception with ImageNet weights, global max pooling, two dense
layers of 128 per task, RMSprop, batch 16.

Weights (download them yourself; `keras.applications.Xception(weights="imagenet",
include_top=False)` caches the same file under ~/.keras/models/):
    wget https://storage.googleapis.com/tensorflow/keras-applications/xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5
    python -m agr_jax.convert keras --model xception \
        --weights xception_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --out weights/xception_imagenet
Train and evaluate:
    python -m agr_jax.train --config configs/xception_imagenet.py --workdir runs/xception_imagenet
    python -m agr_jax.evaluate --workdir runs/xception_imagenet

Expected result: not yet measured (Xception at 224 px is far over the 2-core CPU budget).
The ImageNet weights expect Keras' "tf" preprocessing, [-1, 1]: what agr_jax models are fed.
"""

from agr_jax.defaults import zoo_config


def get_config():
    c = zoo_config("xception", image_size=224, batch_size=16)
    c.name = "xception_imagenet"
    c.data.dir = "../shared/utkface"
    c.data.tfds_dir = "runs/utk_tfds"
    c.model.pooling = "max"  # GlobalMaxPool
    c.model.head_hidden = (128, 128)
    c.init.checkpoint = "weights/xception_imagenet"
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = 1e-4  # fine-tuning a pretrained trunk: well below 1e-3
    c.optimizer.warmup_steps = 0
    c.num_epochs = 20
    return c
