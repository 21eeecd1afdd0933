"""Train the StyleMask mask network.

    python train.py --config configs/tiny.py --workdir runs/tiny
    python train.py --config configs/ffhq1024.py --workdir runs/ffhq \\
        --config.weights.generator=weights/stylegan2 --config.batch_size=12

Same as `stylemask train ...`; see `stylemask train --help`.
"""

import sys

from stylemask_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
