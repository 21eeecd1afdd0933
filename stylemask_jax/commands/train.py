"""`stylemask train`: train the mask network (`train.py` is the same command).

    stylemask train --config tiny --workdir runs/tiny --config.num_steps=20
    stylemask train --config ffhq1024 --workdir runs/paper --config.weights.generator=weights/stylegan2 ...

Several processes: --coordinator/--num-processes/--process-id, else the JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID environment variables; with none of them and
--config.multihost=True JAX detects the cluster (TPU, Slurm, MPI, Kubernetes).
"""

from __future__ import annotations

import os

from stylemask_jax.commands import library
from stylemask_jax.commands.args import json_line, named_config
from stylemask_jax.errors import UserInputError

distributed = library("stylemask_jax.distributed")
loop = library("stylemask_jax.training.loop")
outputs = library("stylemask_jax.outputs")
overrides = library("stylemask_jax.commands.overrides")

# (flag, environment variable) of the three settings, in jax.distributed.initialize's order
PROCESS_SETTINGS = (("--coordinator", "JAX_COORDINATOR_ADDRESS"),
                    ("--num-processes", "JAX_NUM_PROCESSES"),
                    ("--process-id", "JAX_PROCESS_ID"))


def add_config_arguments(p, help_text: str) -> None:
    """--config NAME|FILE and the `--config.x=y` overrides after the options."""
    p.add_argument("--config", required=True, help=help_text)
    p.set_defaults(accepts_overrides=True)


def add_arguments(p) -> None:
    add_config_arguments(p, "a configs/*.py name ('tiny', 'ffhq1024') or a path to a .py file "
                            "with get_config()")
    p.add_argument("--workdir", required=True, help="checkpoints, logs and evaluation images go "
                   "here; an existing workdir is resumed from its latest checkpoint")
    hosts = p.add_argument_group(
        "several processes (default: the environment variables named; with none of the three "
        "and --config.multihost=True the cluster is auto-detected: TPU, Slurm, MPI, Kubernetes)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="address of process 0's coordinator (JAX_COORDINATOR_ADDRESS)")
    hosts.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="number of processes (JAX_NUM_PROCESSES)")
    hosts.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process, 0 .. N-1 (JAX_PROCESS_ID)")
    p.epilog = ("Override any config field after the options, e.g. --config.batch_size=4 "
                "--config.weights.generator=weights/stylegan2 --config.remat=blocks.")


def process_settings(args, environ=None) -> tuple[list, list[str]]:
    """([coordinator, num_processes, process_id], names of the missing ones), each value from its
    flag, else its environment variable; the values given are checked."""
    environ = os.environ if environ is None else environ
    given = [args.coordinator, args.num_processes, args.process_id]
    values = [v if v is not None else (environ.get(env) or None)
              for v, (_, env) in zip(given, PROCESS_SETTINGS)]
    names = [f"{flag}/{env}" for flag, env in PROCESS_SETTINGS]
    for k in (1, 2):
        if isinstance(values[k], str):
            try:
                values[k] = int(values[k])
            except ValueError:
                raise UserInputError(f"{names[k]}={values[k]!r}: expected an integer") from None
    address, n, pid = values
    if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
        raise UserInputError(f"{names[0]}={address!r}: expected HOST:PORT")
    if n is not None and n < 1:
        raise UserInputError(f"{names[1]}={n}: expected >= 1")
    if pid is not None and (pid < 0 or (n is not None and pid >= n)):
        raise UserInputError(f"{names[2]}={pid}: expected 0 .. "
                             f"{'num_processes - 1' if n is None else n - 1}")
    return values, [name for value, name in zip(values, names) if value is None]


def load_config(args):
    """The config named by --config with the command line's overrides applied."""
    return overrides.apply_overrides(named_config(args.config), args.overrides)


def run(args) -> None:
    config = load_config(args)
    values, missing = process_settings(args)
    auto = bool(config.get("multihost", False))
    if missing and len(missing) < 3 and not auto:
        raise UserInputError(f"multi-process run: {', '.join(missing)} not given; give all three "
                             "(or none, with --config.multihost=True, to auto-detect the cluster)")
    outputs.check_output_dir(args.workdir, "--workdir")
    distributed.start(*values, auto=auto)
    with overrides.config_fields():
        metrics = loop.train(config, args.workdir)
    print("final: " + json_line(metrics))
