"""`stylemask convert NETWORK IN... OUT_DIR` (also `python -m convert_weights NETWORK ...`).

    stylemask convert stylegan2 stylegan2-ffhq-config-f.pt weights/stylegan2
    stylemask convert mask-net mask_network_1024.pt weights/mask_net --generator weights/stylegan2
    stylemask convert e4e e4e_ffhq_encode.pt weights/e4e --generator-out weights/e4e_generator
    stylemask convert flame generic_model.pkl landmark_embedding.npy weights/flame

Each network's converter (`convert_weights.NETWORK`) reads the official file without torch and
without running pickled code and returns our parameter tree; this command checks the output
folders first, writes them (Orbax + model.json) and prints what was converted.
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import DefaultsHelpFormatter, check_new_output, naming
from stylemask_jax.errors import UserInputError

common = library("convert_weights.common")
deca = library("convert_weights.deca")
e4e = library("convert_weights.e4e")
flame = library("convert_weights.flame")
irse = library("convert_weights.irse")
mask_net = library("convert_weights.mask_net")
stylegan2 = library("convert_weights.stylegan2")
stylegan2_model = library("stylemask_jax.models.stylegan2")
weights = library("stylemask_jax.weights")

IN_HELP = "the official checkpoint"
OUT_HELP = "output weights directory (Orbax + model.json)"


def _add_stylegan2(p) -> None:
    p.add_argument("checkpoint", metavar="IN.pt", help="rosinality StyleGAN2 .pt (a dict with "
                   "'g_ema'), e.g. stylegan2-ffhq-config-f.pt")
    p.add_argument("out_dir", metavar="OUT_DIR", help=OUT_HELP)
    p.add_argument("--lr-mlp", type=float, default=0.01,
                   help="mapping network lr multiplier (not stored in checkpoints)")


def _run_stylegan2(args) -> None:
    variables, arch, latent_avg = stylegan2.convert_stylegan2(args.checkpoint, lr_mlp=args.lr_mlp)
    tree = dict(variables)
    if latent_avg is not None:
        tree["latent_avg"] = latent_avg
    arch = dict(arch, has_latent_avg=latent_avg is not None)
    weights.save_weights(args.out_dir, stylegan2.KIND, tree, arch, overwrite=args.overwrite)
    print(stylegan2.summary(arch, variables, latent_avg))
    print(f"wrote {args.out_dir}")


def _add_mask_net(p) -> None:
    p.add_argument("checkpoint", metavar="IN.pt", help="the official StyleMask checkpoint, "
                   "e.g. mask_network_1024.pt")
    p.add_argument("out_dir", metavar="OUT_DIR", help=OUT_HELP)
    p.add_argument("--generator", metavar="DIR", default=None,
                   help="a converted generator directory: refuse a mask network whose widths "
                        "do not match it")


def _run_mask_net(args) -> None:
    expected = None
    if args.generator:
        with naming("--generator"):
            header = weights.read_header(args.generator, "stylegan2")
        expected = stylegan2_model.Generator.from_arch(header).style_dims
    variables, arch = mask_net.convert_mask_net(args.checkpoint, expected)
    out = weights.save_weights(args.out_dir, "mask_net", variables, arch, overwrite=args.overwrite)
    print(f"mask network: {arch['num_layers_control']} controlled layers, widths {arch['widths']}, "
          f"{common.count_params(variables):,} parameters, step {arch['step']}")
    print(f"wrote {out}")


def _add_one_file(metavar: str, help_text: str):
    def add(p) -> None:
        p.add_argument("checkpoint", metavar=metavar, help=help_text)
        p.add_argument("out_dir", metavar="OUT_DIR", help=OUT_HELP)
    return add


def _save(args, kind: str, variables, arch: dict, summary: str) -> None:
    out = weights.save_weights(args.out_dir, kind, variables, arch, overwrite=args.overwrite)
    print(f"{summary} -> {out}")


def _run_irse(args) -> None:
    variables, arch = irse.convert_irse(args.checkpoint)
    _save(args, "irse", variables, arch, f"irse: units per stage {arch['units']}, "
          f"{common.count_params(variables['params']):,} parameters")


def _run_deca(args) -> None:
    variables, arch = deca.convert_deca(args.checkpoint)
    _save(args, deca.KIND, variables, arch, f"deca: E_flame with blocks {arch['blocks']}, "
          f"{common.count_params(variables['params']):,} parameters")


def _add_e4e(p) -> None:
    p.add_argument("checkpoint", metavar="IN.pt", help="the official e4e checkpoint, "
                   "e4e_ffhq_encode.pt")
    p.add_argument("out_dir", metavar="OUT_DIR", help=OUT_HELP)
    p.add_argument("--generator-out", metavar="DIR", default=None,
                   help="also convert the checkpoint's StyleGAN2 generator (decoder.*) to DIR")


def _run_e4e(args) -> None:
    (variables, arch), generator = e4e.convert_e4e_checkpoint(args.checkpoint,
                                                              with_generator=bool(args.generator_out))
    if args.generator_out and generator is None:
        raise UserInputError(f"{args.checkpoint}: --generator-out given but the checkpoint has "
                             "no 'decoder.*' entries")
    weights.save_weights(args.out_dir, "e4e", variables, arch, overwrite=args.overwrite)
    print(f"e4e: {arch['n_styles']} codes, units per stage {arch['units']}, "
          f"{common.count_params(variables['params']):,} parameters -> {args.out_dir}")
    if generator is not None:
        tree, gen_arch = generator
        with naming("--generator-out"):
            weights.save_weights(args.generator_out, stylegan2.KIND, tree, gen_arch,
                                 overwrite=args.overwrite)
        print(f"e4e: generator ({common.count_params(tree['params']):,} parameters) -> "
              f"{args.generator_out}")


def _add_flame(p) -> None:
    p.add_argument("model_pkl", metavar="generic_model.pkl",
                   help="FLAME 2020 model file (from https://flame.is.tue.mpg.de)")
    p.add_argument("embedding_npy", metavar="landmark_embedding.npy",
                   help="DECA's landmark embedding (DECA repository, data/)")
    p.add_argument("out_dir", metavar="OUT_DIR", help=OUT_HELP)


def _run_flame(args) -> None:
    arrays, arch = flame.convert_flame(args.model_pkl, args.embedding_npy)
    out = weights.save_weights(args.out_dir, "flame", arrays, arch, overwrite=args.overwrite)
    print(f"wrote FLAME model ({arch['num_vertices']} vertices, {arch['num_faces']} faces) to {out}")


NETWORKS = {  # name -> (what it converts, add_arguments, run)
    "stylegan2": ("rosinality StyleGAN2 generator checkpoint (g_ema, latent_avg) -> Orbax weights",
                  _add_stylegan2, _run_stylegan2),
    "mask-net": ("StyleMask mask network (e.g. mask_network_1024.pt) -> mask-net weights "
                 "directory", _add_mask_net, _run_mask_net),
    "irse": ("ArcFace IR-SE backbone (model_ir_se50.pth) for the identity loss and CSIM",
             _add_one_file("IN.pth", "the official ArcFace weights, model_ir_se50.pth"), _run_irse),
    "e4e": ("e4e inversion encoder (e4e_ffhq_encode.pt); optionally its embedded StyleGAN2 "
            "generator", _add_e4e, _run_e4e),
    "deca": ("DECA deca_model.tar (its E_flame encoder) -> Orbax weights for the DECA encoder",
             _add_one_file("deca_model.tar", "the official DECA checkpoint (only its E_flame "
                                             "encoder is read)"), _run_deca),
    "flame": ("FLAME generic_model.pkl + DECA landmark_embedding.npy -> FLAME model arrays",
              _add_flame, _run_flame),
}
OUTPUT_FLAGS = {"out_dir": "OUT_DIR", "generator_out": "--generator-out"}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="network", metavar="NETWORK", required=True)
    for name, (description, add, run_network) in NETWORKS.items():
        p = sub.add_parser(name, help=description, description=description,
                           formatter_class=DefaultsHelpFormatter)
        add(p)
        p.add_argument("--overwrite", action="store_true",
                       help="replace OUT_DIR if it exists and is not empty")
        p.set_defaults(convert_fn=run_network)


def run(args) -> None:
    for name, flag in OUTPUT_FLAGS.items():   # a bad output fails before the conversion
        if getattr(args, name, None):
            check_new_output(getattr(args, name), flag, args.overwrite)
    args.convert_fn(args)
