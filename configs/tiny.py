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

    # --- training (python train.py --config configs/tiny.py --workdir runs/tiny) -------------
    config.weights = ml_collections.ConfigDict(dict(generator=None, deca=None, irse=None, flame=None))
    config.random_deca_blocks = [1, 1, 1, 1]  # random DECA/ArcFace when weights are None
    config.random_deca_widths = [8, 16, 32, 64]
    config.random_irse_units = [1, 1, 1, 1]
    config.batch_size = 2
    config.num_steps = 30
    config.learning_rate = 1e-2     # the paper uses 1e-4; larger so tiny runs learn in 30 steps
    config.weight_decay = 5e-4       # torch Adam's coupled L2 decay, as the paper's code
    config.lambda_shape = 1.0        # shape, eye and mouth terms
    config.lambda_identity = 10.0
    config.lambda_perceptual = 0.0   # LPIPS is not ported; the paper's setting is 0
    config.recurrent_cycle = True
    config.deca_two_pass = True      # landmarks for the DECA crop from a first DECA+FLAME pass
    config.deca_fixed_box = [62.0, 100.0, 194.0, 232.0]  # first-pass box in the 256 image
    config.deca_box_size_range = [0.5, 2.0]  # second-pass box sizes outside this x fixed: fall back
    config.remat = False             # recompute generator/DECA/ArcFace activations in backward
    config.compute_dtype = "float32"  # or "bfloat16" (parameters and statistics stay float32)
    config.num_devices = 0           # 0 = every device of every host
    config.multihost = False         # call jax.distributed.initialize() first (TPU pods, multi-node)
    config.log_every = 1
    config.checkpoint_every = 10
    config.keep_checkpoints = 2
    config.eval_every = 0            # 0 = only when asked (stylemask evaluate)
    config.eval_pairs = 4
    config.eval_batch_size = 4
    config.eval_grid_pairs = 4
    config.tensorboard = True
    config.progress = True
    return config.lock()
