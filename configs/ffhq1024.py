"""The paper's setup: the official FFHQ-1024 StyleGAN2 and 12 controlled style layers.

    stylemask train --config ffhq1024 --workdir runs/ffhq1024 --config.weights.generator=weights/stylegan2
    stylemask evaluate --workdir runs/ffhq1024

(`stylemask reenact` takes converted weights, not this config: --generator and --mask-net.)
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "ffhq1024"
    config.generator = ml_collections.ConfigDict(dict(
        size=1024, style_dim=512, n_mlp=8, lr_mlp=0.01,
        channels=[512, 512, 512, 512, 512, 256, 128, 64, 32],  # resolutions 4 .. 1024
        blur_kernel=[1, 3, 3, 1],
    ))
    config.num_layers_control = 12
    config.truncation = 0.7
    config.seed = 0

    # --- training (python train.py --config configs/ffhq1024.py --workdir runs/ffhq1024) ----
    # Converted-weights directories (`stylemask convert ...`); set them on the command line,
    # e.g. --config.weights.generator=weights/stylegan2.
    config.weights = ml_collections.ConfigDict(dict(
        generator="weights/stylegan2", deca="weights/deca", irse="weights/irse", flame="weights/flame"))
    config.random_deca_blocks = [3, 4, 6, 3]  # only used when a weights entry is None
    config.random_deca_widths = [64, 128, 256, 512]
    config.random_irse_units = [3, 4, 14, 3]
    config.batch_size = 12
    config.num_steps = 100_000
    config.learning_rate = 1e-4
    config.weight_decay = 5e-4       # torch Adam's coupled L2 decay, as the paper's code
    config.lambda_shape = 1.0        # shape, eye and mouth terms
    config.lambda_identity = 10.0
    config.lambda_perceptual = 0.0   # LPIPS is not ported; the paper's setting is 0
    config.recurrent_cycle = True
    config.deca_two_pass = True      # landmarks for the DECA crop from a first DECA+FLAME pass
    config.deca_fixed_box = [62.0, 100.0, 194.0, 232.0]  # first-pass box in the 256 image
    config.deca_box_size_range = [0.5, 2.0]  # second-pass box sizes outside this x fixed: fall back
    # Memory (benchmarks/train_memory.py): "blocks" recomputes the activations of every
    # generator resolution / DECA bottleneck / IR-SE unit in the backward pass ("none": keep
    # them; "blocks_dots": also keep small matmul results). microbatch: per-device chunk size of
    # gradient accumulation (0 = off; it must divide batch_size / devices), or "auto": the
    # largest divisor whose compiled step fits memory_limit_gib per device. memory_limit_gib
    # None: the device's own limit (GPU, TPU), on a CPU 75% of the RAM; when set, it also
    # lowers a device's limit.
    config.remat = "blocks"
    config.microbatch = ml_collections.FieldReference(1, field_type=(int, str))
    config.memory_limit_gib = ml_collections.config_dict.placeholder(float)
    config.compute_dtype = "float32"  # or "bfloat16" (parameters and statistics stay float32)
    config.num_devices = 0           # 0 = every device of every host
    config.multihost = False         # call jax.distributed.initialize() first (TPU pods, multi-node)
    config.log_every = 50
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    config.eval_every = 5000
    config.eval_pairs = 100          # the official validation pairs
    config.eval_batch_size = 4
    config.eval_grid_pairs = 6
    config.tensorboard = True
    config.progress = True
    return config.lock()
