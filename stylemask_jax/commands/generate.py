"""`stylemask generate`: images from a converted generator (or a config's random one) by seed.

    stylemask generate --generator weights/stylegan2 --seeds 0-7 --out samples/
    stylemask generate --config tiny --out samples/        # random weights: noise, not faces

Writes OUT/seedNNNN.png (and OUT/seedNNNN.npy float32 (H, W, 3) in [-1, 1] with --save-arrays).
"""

from __future__ import annotations

import os

import numpy as np

from stylemask_jax.commands import library
from stylemask_jax.commands.models import load_generator
from stylemask_jax.commands.args import (TRUNCATION_HELP, add_overwrite_argument, at_least,
                                         check_new_output, clear_output, in_range, named_config,
                                         naming, plural)

codes = library("stylemask_jax.codes")
generate = library("stylemask_jax.generate")
images = library("stylemask_jax.images")
outputs = library("stylemask_jax.outputs")


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--generator", metavar="DIR", help="converted StyleGAN2 directory "
                     "(`stylemask convert stylegan2`)")
    src.add_argument("--config", help="'tiny' (or a configs/*.py file): the config's generator "
                     "with random weights from a fixed key; the images are noise, not faces")
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. '0-7' or '1,5,9'; seed s draws "
                   "z = jax.random.normal(jax.random.key(s), (1, style_dim))")
    p.add_argument("--truncation", type=float, default=0.7, action=in_range(0, 1),
                   help=TRUNCATION_HELP)
    p.add_argument("--batch-size", type=int, default=4, action=at_least(1),
                   help="images per jitted batch")
    p.add_argument("--resize-256", action="store_true",
                   help="average-pool the images to 256x256 (StyleMask's face_pool)")
    p.add_argument("--save-arrays", action="store_true",
                   help="also write each image as float32 (H, W, 3) in [-1, 1] to seedNNNN.npy")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (seedNNNN.png)")
    add_overwrite_argument(p)


def run(args) -> None:
    with naming("--seeds:"):
        seeds = codes.parse_seeds(args.seeds)
    check_new_output(args.out, "--out", args.overwrite)
    if args.config is not None:
        config = named_config(args.config)
        gen, variables, latent_avg = generate.random_generator(config.generator, config.seed)
    else:
        gen, variables, latent_avg = load_generator(args.generator)
    mean = (codes.truncation_mean(gen, variables, latent_avg) if args.truncation != 1.0
            else None)
    z = generate.seed_latents(seeds, gen.style_dim)
    clear_output(args.out, args.overwrite)
    with outputs.removed_on_failure(args.out):
        os.makedirs(args.out, exist_ok=True)
        for start, batch in generate.generate(gen, variables, z, args.truncation, mean,
                                              args.batch_size, args.resize_256):
            for seed, image in zip(seeds[start:start + len(batch)], batch):
                images.save_png(os.path.join(args.out, f"seed{seed:04d}.png"), image)
                if args.save_arrays:
                    np.save(os.path.join(args.out, f"seed{seed:04d}.npy"), image.astype(np.float32))
    print(f"wrote {plural(len(seeds), 'image')} ({batch.shape[1]}x{batch.shape[2]}) to {args.out}")
