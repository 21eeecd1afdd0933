"""Where every command writes: output checks, atomic files and folders, cleanup on failure.

    check_output_dir(out, "--out")            # before any work: a folder that can be made here
    check_output_file(path, "--torch")        # a file that can be written here
                                              # (the label names the value in errors)
    with atomic_dir(out) as tmp:               # write into tmp; renamed to `out` at the end
        ...
    with atomic_file(path) as tmp:             # the same for one file
        ...
    with removed_on_failure(out):              # an error removes what this block created in out
        ...

Temporary names sit beside their target (same file system, so the final rename is atomic) and
start with '.tmp-'; a failure removes them. This module imports only `stylemask_jax.errors`, so
the converters and the library both use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from stylemask_jax.errors import UserInputError


def _nearest_existing(path: str) -> str:
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def _check_parent(path: str, what: str) -> None:
    """The nearest existing ancestor of `path` must be a writable folder."""
    probe = _nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(probe):
        raise UserInputError(f"{what} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {path}: {probe} is not writable")


def check_output_dir(path: str, what: str = "output folder", must_be_empty: bool = False) -> None:
    """Raises UserInputError unless `path` is a writable folder or can be created as one
    (with `must_be_empty`, an existing non-empty folder is an error too)."""
    path = os.fspath(path)
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise UserInputError(f"{what} {path}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserInputError(f"{what} {path}: {path} is not writable")
        if must_be_empty and os.listdir(path):
            raise UserInputError(f"{what} {path}: exists and is not empty")
        return
    _check_parent(path, what)


def check_output_file(path: str, what: str) -> None:
    """Raises UserInputError unless a file can be written at `path` (parents may be created)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserInputError(f"{what} {path}: is a folder, expected a file name")
    _check_parent(path, what)


def _temporary_name(path: str) -> tuple[str, str]:
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    return path, parent


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = False):
    """Yields a new empty temporary folder beside `path`; on success it replaces `path` (an
    existing `path` is removed first only with `overwrite`), on failure it is removed."""
    path, parent = _temporary_name(path)
    if os.path.lexists(path) and not overwrite and not (os.path.isdir(path) and not os.listdir(path)):
        raise UserInputError(f"{path}: output folder exists and is not empty")
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str):
    """Yields a temporary file name beside `path`; on success the file replaces `path`, on
    failure it is removed."""
    path, parent = _temporary_name(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def removed_on_failure(folder: str):
    """On an error inside the block, removes what the block created in `folder`: the folder
    itself when it did not exist before, else the entries that were not there before."""
    folder = os.path.abspath(os.fspath(folder))
    existed = os.path.isdir(folder)
    before = set(os.listdir(folder)) if existed else set()
    try:
        yield folder
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        elif os.path.isdir(folder):
            for name in set(os.listdir(folder)) - before:
                target = os.path.join(folder, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    os.remove(target)
        raise
