"""A source folder of face photos or videos -> the list of items a dataset is built from.

Layouts (paths relative to the source folder SRC; they may be mixed):

    SRC/PHOTO.png                 one photo, its own identity:  identity PHOTO, video PHOTO
    SRC/ID/PHOTO.png              one photo of identity ID:     identity ID, video ID/PHOTO
    SRC/ID/VIDEO.mp4              a video of identity ID:       identity ID, video ID/VIDEO
    SRC/ID/VIDEO/FRAME.png        a video stored as frames:     identity ID, video ID/VIDEO

A photo is a one-frame "video" (frame 0). The frames of `ID/VIDEO/` are ordered by a natural
sort of their names (`2.png` before `10.png`); a frame's index is its position in that order.
Hidden entries (a leading `.`) and files with other extensions are ignored and counted; a
folder nested deeper than `ID/VIDEO/` is an error. Nothing here reads pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

from stylemask_jax.errors import UserInputError

PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One photo, video file or frame folder.

    kind: "photo", "video" (one video file) or "frames" (a folder of frame images).
    paths: relative to the source folder: the photo or video file, or the frames in order.
    """

    identity: str
    video: str
    kind: str
    paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Source:
    root: str
    items: tuple[SourceItem, ...]
    ignored: tuple[str, ...]        # relative paths of files that are neither photo nor video

    @property
    def identities(self) -> list[str]:
        return sorted({item.identity for item in self.items})

    @property
    def videos(self) -> list[str]:
        return [item.video for item in self.items]


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")),
                      key=lambda e: _natural_key(e.name))


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _frames(src: str, rel: str, identity: str, ignored: list) -> SourceItem | None:
    frames = []
    for entry in _entries(os.path.join(src, rel)):
        path = f"{rel}/{entry.name}"
        if entry.is_dir():
            raise UserInputError(f"{os.path.join(src, path)}: folders nest at most as "
                                 "SRC/ID/VIDEO/FRAME.png; this one is deeper")
        if _ext(entry.name) in PHOTO_EXTENSIONS:
            frames.append(path)
        else:
            ignored.append(path)
    if not frames:
        return None
    return SourceItem(identity, rel, "frames", tuple(frames))


def scan_source(src: str | os.PathLike) -> Source:
    """Lists the photos, videos and frame folders of `src` in a fixed (sorted) order."""
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise UserInputError(f"{src}: not a folder (expected a folder of photos or of "
                             "identity folders with videos)")
    items: list[SourceItem] = []
    ignored: list[str] = []
    for top in _entries(src):
        if top.is_file():
            if _ext(top.name) in PHOTO_EXTENSIONS:
                items.append(SourceItem(_stem(top.name), _stem(top.name), "photo", (top.name,)))
            else:
                ignored.append(top.name)
            continue
        if not top.is_dir():
            continue
        identity = top.name
        for entry in _entries(top.path):
            rel = f"{identity}/{entry.name}"
            if entry.is_dir():
                item = _frames(src, rel, identity, ignored)
            elif _ext(entry.name) in PHOTO_EXTENSIONS:
                item = SourceItem(identity, f"{identity}/{_stem(entry.name)}", "photo", (rel,))
            elif _ext(entry.name) in VIDEO_EXTENSIONS:
                item = SourceItem(identity, f"{identity}/{_stem(entry.name)}", "video", (rel,))
            else:
                ignored.append(rel)
                item = None
            if item is not None:
                items.append(item)
    seen: dict[str, SourceItem] = {}
    for item in items:
        if item.video in seen:
            raise UserInputError(f"{os.path.join(src, item.paths[0])} and "
                                 f"{os.path.join(src, seen[item.video].paths[0])}: both would be "
                                 f"video {item.video!r}; rename one of them")
        seen[item.video] = item
    if not items:
        raise UserInputError(f"{src}: no photos ({', '.join(PHOTO_EXTENSIONS)}) or videos "
                             f"({', '.join(VIDEO_EXTENSIONS)}) found")
    return Source(src, tuple(items), tuple(ignored))


def file_stamp(root: str, rel: str) -> bytes:
    """What a hash takes of one file: its relative path, size and modification time."""
    stat = os.stat(os.path.join(root, rel))
    return f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()


def fingerprint(source: Source) -> str:
    """A hash of every used file's relative path, size and modification time (not contents)."""
    digest = hashlib.sha256()
    for item in source.items:
        for rel in item.paths:
            digest.update(file_stamp(source.root, rel))
    return digest.hexdigest()


def file_list(source: Source) -> list[str]:
    """Every used file, relative to the source folder, in build order."""
    return [rel for item in source.items for rel in item.paths]
