"""Tiny CPU-sized setup with random weights: tests and the no-weights demo.

    stylemask reenact --config tiny --num-pairs 4 --out out/demo
    python train.py --config configs/tiny.py --workdir runs/tiny

The paper's setup (configs/ffhq1024.py) with small random networks: the generator is the
reference fixtures' layout (64x64, style_dim 64, 9 style layers, 7 controlled), DECA and
ArcFace are one block per stage (DECA also narrower), FLAME is a small synthetic head. Images
from random weights are noise, not faces; the losses only exercise the machinery.
"""

import ml_collections

from configs import ffhq1024


def get_config() -> ml_collections.ConfigDict:
    config = ffhq1024.get_config()
    config.name = "tiny"
    # The generator's architecture, in the same form as a converted generator's model.json.
    config.generator = ml_collections.ConfigDict(dict(
        size=64, style_dim=64, n_mlp=4, lr_mlp=0.01,
        channels=[48, 40, 32, 24, 16],  # per resolution 4, 8, ..., size
        blur_kernel=[1, 3, 3, 1],
    ))
    config.num_layers_control = 7

    # --- training: every network random (weights None) and small ---------------------------
    config.weights = ml_collections.ConfigDict(dict(generator=None, deca=None, irse=None, flame=None))
    config.random_deca_blocks = [1, 1, 1, 1]
    config.random_deca_widths = [8, 16, 32, 64]
    config.random_irse_units = [1, 1, 1, 1]
    config.batch_size = 2
    config.remat = "none"            # tests compare "blocks" and micro-batching against this
    config.microbatch = 0
    config.num_steps = 30
    config.learning_rate = 1e-2      # the paper uses 1e-4; larger so tiny runs learn in 30 steps
    config.log_every = 1
    config.checkpoint_every = 10
    config.keep_checkpoints = 2
    config.eval_every = 0            # 0 = only when asked (stylemask evaluate)
    config.eval_pairs = 4
    config.eval_batch_size = 4
    config.eval_grid_pairs = 4
    return config.lock()
