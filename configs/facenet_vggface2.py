"""Seed 002's recipe: FaceNet Inception-ResNet-v1 pretrained on VGGFace2, fine-tuned on UTKFace
with per-submodule learning rates (γ0 age head, γ0/10 gender and race heads, γ0/100 trunk)
in two phases (heads only, then the whole net).

Weights (MIT, timesler/facenet-pytorch; download them yourself, nothing here fetches):
    wget https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt
    python -m agr_jax.convert facenet --weights 20180402-114759-vggface2.pt \
        --out weights/facenet_vggface2
Train and evaluate:
    python -m agr_jax.train --config configs/facenet_vggface2.py --workdir runs/facenet_vggface2
    python -m agr_jax.evaluate --workdir runs/facenet_vggface2

Expected result: not yet measured (Inception-ResNet-v1 at 160 px is far over the 2-core CPU
budget; run it on an accelerator).
"""

from agr_jax.defaults import zoo_config

GAMMA0 = 1e-3  # the age head's learning rate


def get_config():
    c = zoo_config("inception_resnet_v1", image_size=160, batch_size=64)
    c.name = "facenet_vggface2"
    c.data.dir = "../shared/utkface"
    c.data.tfds_dir = "runs/utk_tfds"
    c.model.embedding_size = 512  # facenet-pytorch's bottleneck (the converted file's)
    c.init.checkpoint = "weights/facenet_vggface2"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = GAMMA0
    c.optimizer.lr_multipliers = (
        ("backbone/*", 0.01),  # γ0/100
        ("head/gender/*", 0.1),  # γ0/10
        ("head/race/*", 0.1),
    )
    # Phase 1: heads only (trunk and its BN statistics frozen); phase 2: everything.
    c.init.phases = ((2, (("backbone/*", 0.0),)), (0, ()))
    c.num_epochs = 20
    return c
