"""`stylemask invert`: face photos (or a dataset) -> W+ codes with the e4e encoder.

    stylemask invert photos/*.jpg --e4e weights/e4e --out codes/
    stylemask invert crops/*.png --aligned --e4e weights/e4e --generator weights/stylegan2 --out codes/
    stylemask invert --dataset data/ --e4e weights/e4e          # every example, per process

Writes OUT/wplus.npy (N, L, 512) with OUT/wplus.txt (the input order), OUT/codes/NAME.npy
(1, L, 512) per image, OUT/aligned/NAME.png (photos) and OUT/reconstructions/NAME.png (with
--generator). Every input is checked before any network loads.
"""

from __future__ import annotations

import os

import numpy as np

from stylemask_jax.commands import library
from stylemask_jax.commands.models import load_generator, load_inverter, tiny_photo_networks
from stylemask_jax.commands.args import (add_overwrite_argument, add_refine_arguments, at_least,
                                         check_new_output, clear_output, named_config, naming,
                                         plural, refine_settings)
from stylemask_jax.errors import UserInputError

datasets = library("stylemask_jax.datasets")
e4e = library("stylemask_jax.models.e4e")
jax = library("jax")
images = library("stylemask_jax.images")
inversion = library("stylemask_jax.inversion")
outputs = library("stylemask_jax.outputs")
pipeline = library("stylemask_jax.photos.pipeline")
tiny = library("stylemask_jax.demo.tiny")
Image = library("PIL.Image")

CODES_DIR = "codes"                 # one (1, n_styles, 512) .npy per image
RECONSTRUCTIONS_DIR = "reconstructions"
ALL_CODES = "wplus.npy"             # (N, n_styles, 512), in input order
ALL_CODES_INDEX = "wplus.txt"       # the input paths, one per line, in the same order
ALIGNED_DIR = "aligned"             # unaligned inputs: their FFHQ crops, NAME.png

DESCRIPTION = """Invert face photos into StyleGAN2 W+ codes with the e4e encoder. Takes ordinary
photos: the largest face is found with dlib's 68 landmarks and FFHQ-aligned to 256 as the official
StyleMask script does (OUT/aligned/NAME.png). With --aligned, the images are ready FFHQ-aligned
crops: square, 256x256 or larger (1024 is box-averaged to 256, sizes that are not multiples of 256
are resized bilinearly). Writes OUT/wplus.npy (N, L, 512) with OUT/wplus.txt (the input order),
OUT/codes/NAME.npy (1, L, 512) per image (both readable by `stylemask reenact --sources/--targets`),
and with --generator OUT/reconstructions/NAME.png."""


def add_arguments(p) -> None:
    p.description = " ".join(DESCRIPTION.split())
    p.add_argument("images", nargs="*", metavar="IMAGE", help="face photos (PNG, JPEG, WebP, ...)")
    p.add_argument("--dataset", metavar="DATA_DIR", default=None,
                   help="instead of IMAGES: invert every example of a `stylemask dataset build` "
                        "dataset; each process (of a multi-host run) inverts its own contiguous "
                        "block, sharded over its devices, into DATA_DIR/.../codes/")
    p.add_argument("--aligned", action="store_true", help="the images are FFHQ-aligned crops "
                   "already: skip detection and alignment")
    p.add_argument("--e4e", metavar="DIR", help="converted e4e encoder (`stylemask convert e4e`)")
    p.add_argument("--config", default=None, help="'tiny': instead of --e4e and --generator, the "
                   "demo's small random e4e and generator (no files needed; the codes mean "
                   "nothing, the reconstructions are noise)")
    p.add_argument("--out", metavar="DIR", help="output folder (with IMAGES)")
    add_overwrite_argument(p)
    p.add_argument("--generator", metavar="DIR", default=None, help="converted StyleGAN2 generator "
                   "(`stylemask convert stylegan2`, or e4e's own via `convert e4e --generator-out`)"
                   ": also write the reconstructions")
    p.add_argument("--batch-size", type=int, default=8, action=at_least(1),
                   help="images per jitted call")
    add_refine_arguments(p.add_argument_group("refinement (needs --generator)"))


def run(args) -> None:
    if args.config is not None and (args.e4e or args.generator):
        raise UserInputError("--config gives random networks; do not combine it with "
                             "--e4e/--generator")
    if args.config is None and not args.e4e:
        raise UserInputError("give --e4e DIR (converted weights), or --config tiny for random "
                             "networks")
    if args.dataset is not None:
        if args.images or args.out:
            raise UserInputError("--dataset inverts a dataset into its own folder: give no IMAGES "
                                 "and no --out with it")
        print(invert_dataset(args))
        return
    if not args.images or not args.out:
        raise UserInputError("give IMAGES and --out DIR (or --dataset DATA_DIR)")
    print(invert_images(args))


def invert_dataset(args) -> str:
    dataset = datasets.load_dataset(args.dataset)
    if args.config is not None:
        _, encoder, variables = tiny.tiny_photo_models(named_config(args.config))
    else:
        with naming("--e4e"):
            encoder, variables = e4e.load_e4e(args.e4e)
    path = datasets.invert_dataset(dataset, encoder, variables, batch_size=args.batch_size)
    start, stop = datasets.shard_bounds(len(dataset), jax.process_index(), jax.process_count())
    return (f"wrote W+ codes ({encoder.n_styles}, 512) of examples [{start}, {stop}) of "
            f"{len(dataset)} to {path}")


def invert_images(args) -> str:
    refine = refine_settings(args)
    if refine.steps and not (args.generator or args.config):
        raise UserInputError("--refine-steps needs --generator DIR (the codes are refined on its "
                             "reconstructions)")
    if args.irse and not refine.steps:
        raise UserInputError("--irse is used only by the refinement: give --refine-steps N too")
    paths = list(args.images)
    crops = None
    if args.aligned:
        for path in paths:  # fail before loading any model
            inversion.check_face_image(path)
    names = inversion.output_names(paths)
    check_new_output(args.out, "--out", args.overwrite)
    if not args.aligned:
        crops = pipeline.prepare_faces(paths).crops
    generator = gvars = None
    if args.config is not None:
        models, inverter = tiny_photo_networks(args)
        generator, gvars = models.generator, models.gvars
    else:
        if args.generator:
            generator, gvars, _ = load_generator(args.generator)
        inverter = load_inverter(args, generator)
    batches = (inversion.invert(inverter, gvars, paths, args.batch_size, load=inversion.load_aligned,
                                generator=generator, desc="invert") if args.aligned else
               inversion.invert(inverter, gvars, crops, args.batch_size, generator=generator,
                                desc="invert"))
    out, all_codes = args.out, []
    clear_output(out, args.overwrite)
    with outputs.removed_on_failure(out):  # a failed run leaves no OUT/codes/ (nor OUT, if new)
        for batch in batches:
            os.makedirs(os.path.join(out, CODES_DIR), exist_ok=True)
            for k, code in enumerate(batch.codes):
                name = names[batch.start + k]
                np.save(os.path.join(out, CODES_DIR, f"{name}.npy"), code[None])
                if batch.images is not None:  # save_png creates OUT/reconstructions/
                    images.save_png(os.path.join(out, RECONSTRUCTIONS_DIR, f"{name}.png"),
                                    batch.images[k])
            all_codes.append(batch.codes)
        np.save(os.path.join(out, ALL_CODES), np.concatenate(all_codes))
        with open(os.path.join(out, ALL_CODES_INDEX), "w") as f:
            f.write("".join(f"{path}\n" for path in paths))
        if crops is not None:
            os.makedirs(os.path.join(out, ALIGNED_DIR), exist_ok=True)
            for name, crop in zip(names, crops):
                Image.fromarray(crop).save(os.path.join(out, ALIGNED_DIR, f"{name}.png"))
    written = [ALL_CODES, CODES_DIR + "/"] + [RECONSTRUCTIONS_DIR + "/"] * bool(generator) + [
        ALIGNED_DIR + "/"] * (crops is not None)
    return (f"wrote {plural(len(paths), 'W+ code')} {all_codes[0].shape[1:]} to {out} "
            f"({', '.join(written)})" + (f"; refined {refine.steps} steps" if refine.steps else ""))
