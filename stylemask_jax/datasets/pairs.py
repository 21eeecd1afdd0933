"""Source/target pairs of a face dataset for the paper's two evaluation protocols.

    pairs = make_pairs(dataset, "self", num_pairs=1000, seed=0)    # int64 (1000, 2)
    write_pairs("pairs_self.json", dataset, pairs, "self", seed=0)
    pairs = read_pairs("pairs_self.json", dataset)

- "self" (self-reenactment): source and target are two different frames of the same video.
  A video with at least two faces is drawn uniformly, then two of its frames without
  replacement.
- "cross" (cross-identity reenactment): the source is drawn uniformly over all examples, the
  target uniformly over the examples of every other identity.

Pairs are drawn independently (a pair may repeat when few are possible) with
`numpy.random.default_rng(seed)`; the written file (JSON or CSV, by extension) holds the
indices, the videos and frames, and the dataset's fingerprint, so runs are comparable.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from stylemask_jax.errors import UserInputError

PROTOCOLS = ("self", "cross")
CSV_COLUMNS = ("source", "target", "source_video", "source_frame", "target_video",
               "target_frame")


def _table(dataset) -> dict:
    return dataset.table if hasattr(dataset, "table") else dataset


def _self_pairs(table: dict, num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    video = np.asarray(table["video_id"])
    order = np.argsort(video, kind="stable")
    _, starts, counts = np.unique(video[order], return_index=True, return_counts=True)
    usable = np.flatnonzero(counts >= 2)
    if len(usable) == 0:
        raise UserInputError("protocol self needs a video with at least two faces; every "
                             "video (or photo) of this dataset has one")
    chosen = usable[rng.integers(0, len(usable), num_pairs)]
    first = rng.integers(0, counts[chosen])
    second = rng.integers(0, counts[chosen] - 1)
    second = second + (second >= first)          # a different frame of the same video
    return np.stack([order[starts[chosen] + first], order[starts[chosen] + second]], axis=1)


def _cross_pairs(table: dict, num_pairs: int, rng: np.random.Generator) -> np.ndarray:
    identity = np.asarray(table["identity_id"])
    order = np.argsort(identity, kind="stable")
    ids, starts, counts = np.unique(identity[order], return_index=True, return_counts=True)
    if len(ids) < 2:
        raise UserInputError("protocol cross needs at least two identities; this dataset "
                             "has one")
    source = rng.integers(0, len(identity), num_pairs)
    block = np.searchsorted(ids, identity[source])
    draw = rng.integers(0, len(identity) - counts[block])       # skip the source's identity
    draw = draw + counts[block] * (draw >= starts[block])
    return np.stack([source, order[draw]], axis=1)


def make_pairs(dataset, protocol: str, num_pairs: int, seed: int = 0) -> np.ndarray:
    """int64 (num_pairs, 2) of (source index, target index) into `dataset`.

    dataset: a `FaceDataset` or its `table` ({"identity_id", "video_id", ...} int arrays).
    """
    if protocol not in PROTOCOLS:
        raise UserInputError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got "
                             f"{protocol!r}")
    if num_pairs < 1:
        raise UserInputError(f"number of pairs must be at least 1, got {num_pairs}")
    table = _table(dataset)
    rng = np.random.default_rng(seed)
    pairs = (_self_pairs if protocol == "self" else _cross_pairs)(table, num_pairs, rng)
    return pairs.astype(np.int64)


def write_pairs(path: str | os.PathLike, dataset, pairs, protocol: str, seed: int) -> str:
    """Writes the pairs as JSON (with the protocol, seed and dataset) or CSV, by extension."""
    path = os.fspath(path)
    table = _table(dataset)
    pairs = np.asarray(pairs, np.int64)
    rows = [{"source": int(s), "target": int(t),
             "source_video": str(table["video"][s]), "source_frame": int(table["frame"][s]),
             "target_video": str(table["video"][t]), "target_frame": int(table["frame"][t])}
            for s, t in pairs]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    if path.endswith(".csv"):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    elif path.endswith(".json"):
        metadata = getattr(dataset, "metadata", {})
        with open(tmp, "w") as f:
            json.dump({"protocol": protocol, "seed": int(seed), "num_pairs": len(rows),
                       "dataset": getattr(dataset, "path", None),
                       "fingerprint": metadata.get("fingerprint"),
                       "num_examples": len(table["frame"]), "pairs": rows}, f, indent=1)
    else:
        raise UserInputError(f"{path}: pair files are .json or .csv")
    os.replace(tmp, path)
    return path


def read_pairs(path: str | os.PathLike, dataset=None) -> np.ndarray:
    """int64 (n, 2) pairs from a file written by `write_pairs`; checked against `dataset`."""
    path = os.fspath(path)
    try:
        if path.endswith(".csv"):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            header = {}
        else:
            with open(path) as f:
                header = json.load(f)
            rows = header["pairs"]
        pairs = np.array([[int(r["source"]), int(r["target"])] for r in rows],
                         np.int64).reshape(-1, 2)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such pair file") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserInputError(f"{path}: not a pair file written by `make_pairs` ({err})") from None
    if dataset is not None:
        table = _table(dataset)
        expected = getattr(dataset, "metadata", {}).get("fingerprint")
        if header.get("fingerprint") and expected and header["fingerprint"] != expected:
            raise UserInputError(f"{path}: was drawn for another build of the dataset "
                                 f"({header.get('dataset')}); draw the pairs again")
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(table["frame"])):
            raise UserInputError(f"{path}: indices up to {pairs.max()} but the dataset has "
                                 f"{len(table['frame'])} examples")
        for row, (s, t) in zip(rows, pairs):
            if "source_video" in row and (str(table["video"][s]) != row["source_video"]
                                          or str(table["video"][t]) != row["target_video"]):
                raise UserInputError(f"{path}: pair ({s}, {t}) names videos "
                                     f"{row['source_video']}, {row['target_video']} that do not "
                                     "match the dataset; draw the pairs again")
    return pairs
