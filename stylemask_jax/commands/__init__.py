"""The sub-commands of `stylemask`, one module each: `add_arguments(parser)` and `run(args)`.

A command parses and checks its arguments (ranges in the options' actions, paths before any
model loads), calls the library with objects (loaded models, arrays, a config), has the library
write its outputs, and prints the summary. Library errors name values and paths; the command
adds the flag (`args.naming`). The library never imports this package.

The library modules a command uses are imported at the top of its module with `library(NAME)`:
the module object is created at once and executed on first use (`importlib.util.LazyLoader`),
so `stylemask SUB --help` reads the options without importing JAX.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def library(name: str) -> ModuleType:
    """The module `name`, executed when one of its attributes is first used."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
