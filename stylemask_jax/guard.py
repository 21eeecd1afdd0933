"""The command-line guard shared by `stylemask` and `python -m convert_weights`.

`run_guarded(fn, args)` runs one sub-command and turns the project's errors (and missing or
unreadable files) into one line `stylemask: error: ...` on stderr with exit code 2, on a line of
its own (the project's open progress bars, `progress.progress_bar`, are closed first). It
imports only `stylemask_jax.errors` and `stylemask_jax.progress` (tqdm), so both entry points
import it without importing each other or the library.
"""

from __future__ import annotations

import sys

from stylemask_jax.errors import StylemaskError
from stylemask_jax.progress import close_open_bars

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
_INPUT_ERRORS = (StylemaskError, FileNotFoundError, FileExistsError, PermissionError,
                 NotADirectoryError, IsADirectoryError)


def run_guarded(fn, args) -> int:
    """Runs `fn(args)`, turning known input errors into a one-line message and exit code 2."""
    try:
        code = fn(args)
    except _INPUT_ERRORS as err:
        close_open_bars()
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"stylemask: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        close_open_bars()
        print("stylemask: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if code is None else int(code)
