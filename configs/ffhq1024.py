"""The paper's setup: the official FFHQ-1024 StyleGAN2 and 12 controlled style layers.

    stylemask reenact --config ffhq1024 --generator weights/stylegan2 --mask-net weights/mask_net ...
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
    return config
