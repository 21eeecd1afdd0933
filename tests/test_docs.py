"""The documentation does not lie about the command line or the repository.

README.md and docs/*.md are read as text and checked against the real argument parser
(`stylemask_jax.cli.build_parser()`) and the files of this checkout:

- every `stylemask ...` command in a fenced code block names a sub-command (and action, such
  as `convert stylegan2`) that exists, and each of its `--flags` is an option of that
  sub-command (`train` and `evaluate` also take `--config.x=y` overrides);
  `python train.py` is `stylemask train`, `python -m convert_weights` is
  `stylemask convert`, and `python -m benchmarks.NAME --flag` needs benchmarks/NAME.py to
  define the flag;
- every `--flag` written anywhere is an option of some parser (or of a benchmark script, or of
  another tool in OTHER_TOOLS_FLAGS);
- every repository path mentioned (`configs/tiny.py`, `docs/...`, ...), every relative link and
  every `benchmarks.NAME` module exists.

Only `build_parser` is imported (no model is built): the whole file runs in about a second.
"""

from __future__ import annotations

import argparse
import glob
import re
import shlex
from pathlib import Path

import pytest

from stylemask_jax.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Flags of other programs that the docs may mention; each says whose it is.
OTHER_TOOLS_FLAGS = {
    "--xla_force_host_platform_device_count",  # XLA (XLA_FLAGS): fake N CPU devices
    "--xla_cpu_scheduler_type",  # XLA (XLA_FLAGS): XLA:CPU's memory-optimised scheduler
    "--xla_cpu_enable_xprof_traceme",  # XLA (XLA_FLAGS): per-op trace events
    "--xla_backend_optimization_level",  # XLA (XLA_FLAGS): benchmarks.train_memory --fast-compile
    "--xla_llvm_disable_expensive_passes",  # XLA (XLA_FLAGS): the same
    # Apache Beam pipeline options, passed through `dataset build --beam-options`
    "--runner", "--flink_master", "--environment_type", "--flink_job_server_jar",
    "--spark_master_url",
}

# Sub-commands that take `--config.x=y` overrides (besides any whose parser says so itself).
OVERRIDE_COMMANDS = {"train", "evaluate"}


# Top-level folders and files whose paths the docs may name; anything under them must exist.
PATH_RE = re.compile(
    r"(?<![\w./-])((?:configs|benchmarks|docs|tests|convert_weights|stylemask_jax|\.ci)"
    r"/[\w./*-]*|train\.py|pyproject\.toml)")
LINK_RE = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
BENCHMARK_MODULE_RE = re.compile(r"(?<![\w/.])benchmarks\.([a-z_]\w*)")  # NAME: a placeholder
FLAG_RE = re.compile(r"(?<![\w-])--[A-Za-z][\w.-]*")
FENCE_RE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
ADD_ARGUMENT_RE = re.compile(r"add_argument\(\s*[\"'](--[\w-]+)[\"']")


def _flag_name(token: str) -> str:
    """'--refine-steps=5' -> '--refine-steps'; trailing punctuation of prose dropped."""
    return token.split("=", 1)[0].rstrip(".,;:)]`'\"")


def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _accepts_overrides(parser: argparse.ArgumentParser, words=()) -> bool:
    return bool(parser.get_default("accepts_overrides")) or " ".join(words) in OVERRIDE_COMMANDS


def _all_parsers(parser):
    yield parser
    for sub in _sub_parsers(parser).values():
        yield from _all_parsers(sub)


def _benchmark_flags(name: str) -> set[str] | None:
    path = ROOT / "benchmarks" / f"{name}.py"
    return set(ADD_ARGUMENT_RE.findall(path.read_text())) if path.exists() else None


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def _doc_texts():
    return [(p.relative_to(ROOT).as_posix(), p.read_text()) for p in DOCS]


def _commands(text: str):
    """Shell commands of the fenced blocks: continuation lines joined, split at && ; |."""
    for block in FENCE_RE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                continue
            command = []
            for token in tokens + ["&&"]:
                if token in ("&&", "||", ";", "|"):
                    if command:
                        yield line.strip(), command
                    command = []
                else:
                    command.append(token.strip("[]"))


def _stylemask_args(tokens: list[str]) -> list[str] | None:
    """The arguments after `stylemask` (or an alias of it) in one command, else None."""
    for i, token in enumerate(tokens):
        if token == "stylemask":
            return tokens[i + 1:]
        if token == "train.py" and i > 0 and tokens[i - 1].startswith("python"):
            return ["train", *tokens[i + 1:]]
        if token == "-m" and i + 1 < len(tokens):
            module = tokens[i + 1]
            if module == "convert_weights":
                return ["convert", *tokens[i + 2:]]
            if module in ("stylemask_jax.cli", "stylemask_jax"):
                return tokens[i + 2:]
    return None


def _check_stylemask_command(parser, args: list[str]) -> list[str]:
    """What is wrong with `stylemask ARGS` (empty when the parser knows every part of it)."""
    words = []
    for token in args:
        subs = _sub_parsers(parser)
        if not subs or token.startswith("-"):
            break
        if token not in subs:
            return [f"unknown sub-command {' '.join([*words, token])!r}"]
        words.append(token)
        parser = subs[token]
    if not words and not any(t.startswith("-") for t in args):
        return ["no sub-command"]
    options = _options(parser)
    problems = []
    for token in args:
        if not token.startswith("--"):
            continue
        flag = _flag_name(token)
        if flag.startswith("--config.") and _accepts_overrides(parser, words):
            continue
        if flag not in options:
            problems.append(f"{flag} is not an option of `{' '.join(['stylemask', *words])}`")
    return problems


def _check_benchmark_command(tokens: list[str]) -> list[str]:
    for i, token in enumerate(tokens[:-1]):
        if token == "-m" and tokens[i + 1].startswith("benchmarks."):
            name = tokens[i + 1].split(".", 1)[1]
            flags = _benchmark_flags(name)
            if flags is None:
                return [f"no benchmarks/{name}.py"]
            return [f"{_flag_name(t)} is not an option of benchmarks/{name}.py"
                    for t in tokens[i + 2:]
                    if t.startswith("--") and _flag_name(t) not in flags]
    return []


def test_commands_in_code_blocks_parse(parser):
    checked, problems = 0, []
    for name, text in _doc_texts():
        for line, tokens in _commands(text):
            args = _stylemask_args(tokens)
            if args is not None:
                checked += 1
                found = _check_stylemask_command(parser, args)
            else:
                found = _check_benchmark_command(tokens)
            problems += [f"{name}: {line}\n    {p}" for p in found]
    assert checked >= 10, f"only {checked} stylemask commands found: is the regex still right?"
    assert not problems, "\n".join(problems)


def test_every_flag_mentioned_exists(parser):
    known = set(OTHER_TOOLS_FLAGS)
    overrides = bool(OVERRIDE_COMMANDS)
    for p in _all_parsers(parser):
        known |= _options(p)
    for path in (ROOT / "benchmarks").glob("*.py"):
        known |= _benchmark_flags(path.stem)
    problems = []
    for name, text in _doc_texts():
        for token in FLAG_RE.findall(text):
            flag = _flag_name(token)
            if flag.startswith("--config.") and overrides:
                continue
            if flag not in known:
                problems.append(f"{name}: {flag}")
    assert not problems, "flags that no parser defines:\n" + "\n".join(sorted(set(problems)))


def test_paths_and_links_exist():
    problems = []
    for name, text in _doc_texts():
        here = (ROOT / name).parent
        for token in PATH_RE.findall(text):
            path = token.rstrip(".,;:")
            if not glob.glob(str(ROOT / path)):
                problems.append(f"{name}: {path}")
        for target in LINK_RE.findall(text):
            if "://" not in target and not target.startswith("mailto:"):
                if not (here / target).exists():
                    problems.append(f"{name}: link {target}")
        for module in BENCHMARK_MODULE_RE.findall(text):
            if not (ROOT / "benchmarks" / f"{module}.py").exists():
                problems.append(f"{name}: benchmarks.{module}")
    assert not problems, "missing in the repository:\n" + "\n".join(sorted(set(problems)))


def test_readme_keeps_the_ci_commands():
    """.ci/run runs the README's install and test lines: they must stay word for word."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for line in ('pip install -e ".[test]"', "python -m pytest -q -n 2"):
        assert line in readme and line in ci, line
