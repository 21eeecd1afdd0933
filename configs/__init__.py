"""One Python file per setup; `get_config()` in each returns the whole config.

    load_config("tiny")                  # configs/tiny.py, discovered by file name
    load_config("path/to/my_config.py")  # any file defining get_config()
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from stylemask_jax.errors import UserInputError

_HERE = os.path.dirname(os.path.abspath(__file__))


def available_configs() -> list[str]:
    """The names of configs/*.py (without .py), sorted."""
    return sorted(name[:-3] for name in os.listdir(_HERE)
                  if name.endswith(".py") and not name.startswith("_"))


def load_config(name_or_path: str):
    """A config by name (a configs/*.py file name) or by path to a .py file with get_config()."""
    if name_or_path in available_configs():
        return importlib.import_module(f"configs.{name_or_path}").get_config()
    if name_or_path.endswith(".py") and os.path.isfile(name_or_path):
        spec = importlib.util.spec_from_file_location("user_config", name_or_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise UserInputError(f"{name_or_path} defines no get_config()")
        return module.get_config()
    raise UserInputError(f"unknown config {name_or_path!r}; expected one of "
                         f"{', '.join(available_configs())} or a .py file")
