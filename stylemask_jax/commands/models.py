"""The networks a command loads from converted-weights folders, each error naming its flag.

    models = load_models(args.generator, args.mask_net)        # inference.Models
    inverter = load_inverter(args, models.generator)           # --e4e, --irse, --refine-*
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import naming, refine_settings

e4e = library("stylemask_jax.models.e4e")
inference = library("stylemask_jax.inference")
inversion = library("stylemask_jax.inversion")
irse = library("stylemask_jax.models.irse")
stylegan2 = library("stylemask_jax.models.stylegan2")


def load_generator(generator_dir: str):
    """(Generator, variables, latent_avg or None) of --generator."""
    with naming("--generator"):
        return stylegan2.load_generator(generator_dir)


def load_models(generator_dir: str, mask_net_dir: str):
    """The converted generator and mask network (`inference.Models`)."""
    generator, gvars, latent_avg = load_generator(generator_dir)
    with naming("--mask-net"):
        mask_net, mvars = inference.load_mask_net(mask_net_dir, generator)
    return inference.Models(generator, gvars, mask_net, mvars, latent_avg)


def load_irse(args):
    """(IR-SE module, variables) of --irse, or None."""
    if not args.irse:
        return None
    with naming("--irse"):
        return irse.load_irse(args.irse)


def load_inverter(args, generator):
    """The e4e inverter of --e4e with the refinement of --refine-steps (on `generator`'s
    reconstructions, with --irse's identity term), checked against `generator`."""
    with naming("--e4e"):
        encoder, variables = e4e.load_e4e(args.e4e)
    identity = load_irse(args)
    with naming("--generator:"):
        return inversion.make_inverter(encoder, variables, generator, refine_settings(args),
                                       identity)
