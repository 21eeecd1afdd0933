"""The networks a command loads from converted-weights folders, each error naming its flag.

    models = load_models(args.generator, args.mask_net)        # inference.Models
    inverter = load_inverter(args, models.generator)           # --e4e, --irse, --refine-*
    models, inverter = tiny_photo_networks(args)               # or --config tiny: random ones
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import named_config, naming, refine_settings

e4e = library("stylemask_jax.models.e4e")
inference = library("stylemask_jax.inference")
inversion = library("stylemask_jax.inversion")
irse = library("stylemask_jax.models.irse")
stylegan2 = library("stylemask_jax.models.stylegan2")
tiny = library("stylemask_jax.demo.tiny")


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


def load_inverter(args, generator, e4e_networks=None):
    """The e4e inverter with the refinement of --refine-steps (on `generator`'s reconstructions,
    with --irse's identity term), checked against `generator`. e4e_networks: (module, variables)
    already built (the random e4e of --config), else --e4e's converted weights."""
    if e4e_networks is None:
        with naming("--e4e"):
            e4e_networks = e4e.load_e4e(args.e4e)
    encoder, variables = e4e_networks
    identity = load_irse(args)
    with naming("--generator:"):
        return inversion.make_inverter(encoder, variables, generator, refine_settings(args),
                                       identity)


def tiny_photo_networks(args, seed: int = 0):
    """--config's random networks that fit together (`demo.tiny`: a style_dim-512 generator and a
    small e4e): (inference.Models, the inverter of --refine-steps and --irse)."""
    models, encoder, variables = tiny.tiny_photo_models(named_config(args.config), seed=seed)
    return models, load_inverter(args, models.generator, (encoder, variables))
