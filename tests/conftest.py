"""Test-session setup: a persistent XLA compilation cache shared by the pytest-xdist workers.

Many tests compile the same small networks; caching compiled executables on disk (a temporary
folder per user, never in the repository) cuts the suite's wall time on 2-core CI machines.
"""

import os
import tempfile

import jax

_CACHE = os.path.join(tempfile.gettempdir(), f"stylemask-jax-xla-cache-{os.getuid()}")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
