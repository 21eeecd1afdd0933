"""`stylemask evaluate`: CSIM, pose and expression error of a training run's checkpoint.

    stylemask evaluate --workdir runs/paper                      # the validation pairs
    stylemask evaluate --workdir runs/paper --dataset data/ --protocol cross --num-pairs 1000

Generated pairs: the official 100 validation pairs (random codes on the tiny config); also
writes WORKDIR/eval/step_XXXXXXX.png. Real pairs (`--dataset`, codes from `stylemask invert
--dataset`): WORKDIR/eval_dataset/pairs_PROTOCOL_NUM_seedSEED.json and metrics_*.json.
"""

from __future__ import annotations

import os

from stylemask_jax.commands import library
from stylemask_jax.commands.args import at_least, json_line, naming
from stylemask_jax.errors import UserInputError

checkpoints = library("stylemask_jax.training.checkpoints")
config_checks = library("stylemask_jax.training.config_checks")
datasets = library("stylemask_jax.datasets")
evaluation = library("stylemask_jax.training.evaluation")
overrides = library("stylemask_jax.commands.overrides")


def add_arguments(p) -> None:
    p.add_argument("--workdir", required=True, help="a training workdir (its config.json and "
                   "newest checkpoint that restores are used)")
    p.add_argument("--step", type=int, default=None, help="evaluate this checkpoint step")
    real = p.add_argument_group("real pairs (a dataset inverted with `stylemask invert --dataset`)")
    real.add_argument("--dataset", metavar="DATA_DIR", default=None,
                      help="evaluate on real pairs of this dataset instead of generated ones")
    real.add_argument("--protocol", choices=("self", "cross"), default="self",
                      help="self: source and target frames of the same video; cross: different "
                           "identities")
    real.add_argument("--num-pairs", type=int, default=1000, action=at_least(1),
                      help="pairs to draw")
    real.add_argument("--seed", type=int, default=0, help="seed of the pair draw")
    real.add_argument("--pairs", metavar="FILE", default=None,
                      help="a pairs_*.json written by an earlier run (overrides the draw)")
    real.add_argument("--batch-size", type=int, default=8, action=at_least(1),
                      help="pairs per jitted batch")
    p.set_defaults(accepts_overrides=True)
    p.epilog = ("Config fields may be overridden as in train, e.g. --config.eval_pairs=20. With "
                "--dataset, the pairs and metrics are written to WORKDIR/eval_dataset/.")


def restore(args):
    """(nets, frozen, mask params, step, config) of --workdir (newest restorable or --step),
    with the command line's config overrides."""
    with naming("--workdir"):
        saved = checkpoints.read_config(args.workdir)
    config = overrides.apply_overrides(saved, args.overrides)
    with overrides.config_fields():
        config_checks.validate_config(config)
        steps = checkpoints.saved_steps(args.workdir)
        if args.step is not None and args.step not in steps:
            directory = checkpoints.checkpoint_dir(args.workdir)
            raise UserInputError(f"--step {args.step}: no such checkpoint in {directory} (steps: "
                                 f"{', '.join(map(str, steps)) or 'none'})")
        with naming("--workdir"), overrides.config_fields():
            nets, frozen, params, step = checkpoints.restore_mask_params(args.workdir, config,
                                                                         step=args.step)
    return nets, frozen, params, step, config


def run(args) -> None:
    if args.dataset is not None:
        print(json_line(evaluate_dataset(args)))
        return
    nets, frozen, params, step, config = restore(args)
    metrics = evaluation.make_evaluator(nets, config)(params, frozen, args.workdir, step)
    print(json_line({"step": step, **metrics}))


def evaluate_dataset(args) -> dict:
    dataset = datasets.load_dataset(args.dataset)
    codes = datasets.load_codes(dataset)                       # fail before the networks load
    out_dir = os.path.join(args.workdir, "eval_dataset")
    if args.pairs is not None:
        with naming("--pairs"):
            pairs = datasets.read_pairs(args.pairs, dataset)
        tag = os.path.splitext(os.path.basename(args.pairs))[0].replace("pairs_", "", 1)
        pairs_file = args.pairs
    else:
        pairs = datasets.make_pairs(dataset, args.protocol, args.num_pairs, args.seed)
        tag = f"{args.protocol}_{args.num_pairs}_seed{args.seed}"
        pairs_file = datasets.write_pairs(os.path.join(out_dir, f"pairs_{tag}.json"), dataset,
                                          pairs, args.protocol, args.seed)
    nets, frozen, params, step, config = restore(args)
    metrics_file = os.path.join(out_dir, f"metrics_{tag}.json")
    result = datasets.evaluate_dataset(dataset, pairs, nets, frozen, params, config, codes=codes,
                                       batch_size=args.batch_size, out=metrics_file)
    result.pop("per_pair")
    return {"step": step, **result, "pairs_file": pairs_file, "metrics_file": metrics_file}
