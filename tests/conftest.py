"""Test-session setup: a persistent XLA compilation cache shared by the pytest-xdist workers, and
the FLAME fixture model unpacked from its gzip file.

Many tests compile the same small networks; caching compiled executables on disk (a temporary
folder per user, never in the repository) cuts the suite's wall time on 2-core CI machines.
"""

import functools
import gzip
import os
import tempfile

import jax
import numpy as np
import pytest

from convert_weights.flame import convert_flame
from stylemask_jax.models import flame as flame_lib

_CACHE = os.path.join(tempfile.gettempdir(), f"stylemask-jax-xla-cache-{os.getuid()}")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
os.environ["STYLEMASK_COMPILE_CACHE"] = _CACHE  # `stylemask` run as a subprocess uses it too


_FLAME_GZ = os.path.join(os.path.dirname(__file__), "fixtures", "flame", "generic_model.pkl.gz")


@functools.lru_cache(maxsize=None)
def flame_model_pkl() -> str:
    """The path of the synthetic FLAME `generic_model.pkl` (tracked gzipped: 3.4 instead of 6.3
    MB), unpacked once per content into a per-user temporary folder (atomically: the xdist
    workers may unpack it at the same time); later calls in a process return the path directly."""
    with gzip.open(_FLAME_GZ, "rb") as f:
        data = f.read()
    folder = os.path.join(tempfile.gettempdir(), f"stylemask-jax-fixtures-{os.getuid()}")
    path = os.path.join(folder, "generic_model.pkl")
    if not _has_content(path, data):
        os.makedirs(folder, exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    return path


def _has_content(path: str, data: bytes) -> bool:
    if not os.path.exists(path) or os.path.getsize(path) != len(data):
        return False
    with open(path, "rb") as f:
        return f.read() == data


_FLAME_FIXTURES = os.path.dirname(_FLAME_GZ)


@pytest.fixture(scope="module")
def flame_model():
    """The synthetic FLAME fixture model, converted by our converter."""
    arrays, arch = convert_flame(flame_model_pkl(),
                                 os.path.join(_FLAME_FIXTURES, "landmark_embedding.npy"))
    return flame_lib.FlameModel.from_arrays(arrays, arch)


@pytest.fixture(scope="module")
def flame_cases():
    """The official FLAME code's reference outputs on the fixture (tests/fixtures/flame)."""
    return dict(np.load(os.path.join(_FLAME_FIXTURES, "cases.npz")))
