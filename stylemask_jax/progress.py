"""The project's progress bars: tqdm bars that the command-line guard can close.

    with progress_bar(total=n, desc="reenact", unit="pair") as bar:   # disabled when desc is None
        bar.update(k)
    close_open_bars()        # the guard, before printing an error line

A bar left open by an error (e.g. in a batch loop whose generator is still suspended) would
otherwise share its line with the error message. Every bar the project opens is made here and
remembered (weakly) until it is closed, so closing them needs nothing private of tqdm.
This module imports only tqdm, so the guard imports it without importing the library.
"""

from __future__ import annotations

import weakref

from tqdm.auto import tqdm

_open_bars: "weakref.WeakSet[tqdm]" = weakref.WeakSet()


def progress_bar(iterable=None, *, desc: str | None = None, disable: bool | None = None,
                 **kwargs) -> tqdm:
    """A tqdm bar (same arguments); disabled when `desc` is None unless `disable` says otherwise."""
    bar = tqdm(iterable, desc=desc, disable=desc is None if disable is None else disable, **kwargs)
    _open_bars.add(bar)
    return bar


def close_open_bars() -> None:
    """Closes every bar made by `progress_bar` that is still open (closing twice is harmless)."""
    for bar in list(_open_bars):
        bar.close()
        _open_bars.discard(bar)
