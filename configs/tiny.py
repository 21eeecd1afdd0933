"""Tiny CPU-sized setup with random weights: tests and the no-weights demo.

    stylemask generate --config tiny --seeds 0-3 --out out/tiny
    python train.py --config configs/tiny.py --workdir runs/tiny

The generator is the reference fixtures' small layout (64x64, style_dim 64, 9 style layers);
images from random weights are noise, not faces.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "tiny"
    # The generator's architecture, in the same form as a converted generator's model.json.
    config.generator = ml_collections.ConfigDict(dict(
        size=64, style_dim=64, n_mlp=4, lr_mlp=0.01,
        channels=[48, 40, 32, 24, 16],  # per resolution 4, 8, ..., size
        blur_kernel=[1, 3, 3, 1],
    ))
    config.num_layers_control = 7
    config.truncation = 0.7
    config.seed = 0
    return config
