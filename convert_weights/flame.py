"""FLAME `generic_model.pkl` + DECA `landmark_embedding.npy` -> a FLAME model directory.

Both files are read without chumpy, scipy or torch and without executing pickled code:

- `generic_model.pkl` is a Python-2 (latin-1) pickle holding numpy arrays, one chumpy `Ch`
  object (the blend shapes) and a scipy `csc_matrix` (the joint regressor). Stand-in classes
  accept their pickled state: the chumpy object hands back its `x` array, the sparse matrix is
  densified from `data`, `indices`, `indptr` and its shape.
- `landmark_embedding.npy` is a 0-d object array; its header is parsed with
  `numpy.lib.format` and the payload (a pickle that embeds legacy torch storages) goes through
  the restricted unpickler.

The converted arrays (float32 values, int32 indices; see `convert_flame`) are what
`stylemask_jax.models.flame.FlameModel` holds. DECA uses the first 100 identity and the first
50 expression components, so only those are kept.

The real files are licence-restricted and never shipped: register at https://flame.is.tue.mpg.de
for `generic_model.pkl` (FLAME 2020) and take `landmark_embedding.npy` from the DECA repository's
`data/` folder.
"""

from __future__ import annotations

import io
import os

import numpy as np

from convert_weights.common import ConversionError
from convert_weights.torch_reader import CheckpointError, restricted_unpickle


N_SHAPE = 100        # identity components DECA uses (of 300 in the file)
N_EXP = 50           # expression components DECA uses (of 100 in the file)
EXP_OFFSET = 300     # expression components start here in `shapedirs`
NUM_JOINTS = 5       # global, neck, jaw, left eye, right eye
NUM_DYNAMIC_ROWS = 79
NUM_CONTOUR = 17
NUM_STATIC = 51
NUM_LANDMARKS = 68


# ---------------------------------------------------------------------------------------------
# stand-ins for the non-numpy objects in the pickle (they only keep data, never run code)
# ---------------------------------------------------------------------------------------------

class _ChumpyStandIn:
    """Accepts a pickled `chumpy.ch.Ch` state dict and keeps only its value array `x`."""

    def __setstate__(self, state):
        if not isinstance(state, dict) or "x" not in state:
            raise CheckpointError("chumpy object without an 'x' array")
        self.value = np.asarray(state["x"])


class _CscStandIn:
    """Accepts a pickled `scipy.sparse.csc_matrix` state dict; `dense()` rebuilds the matrix."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise CheckpointError("sparse matrix state is not a dict")
        missing = [k for k in ("data", "indices", "indptr") if k not in state]
        shape = state.get("_shape", state.get("shape"))
        if missing or shape is None:
            raise CheckpointError(f"sparse matrix state lacks {missing or ['_shape']}")
        self.data, self.indices, self.indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
        self.shape = tuple(int(s) for s in shape)

    def dense(self) -> np.ndarray:
        rows, cols = self.shape
        if self.indptr.shape != (cols + 1,) or self.data.shape != self.indices.shape:
            raise CheckpointError(f"sparse matrix of shape {self.shape} has inconsistent "
                                  f"indptr {self.indptr.shape} / data {self.data.shape} / "
                                  f"indices {self.indices.shape}")
        nnz = int(self.indptr[-1])
        if nnz != self.data.size or np.any(np.diff(self.indptr) < 0) or self.indptr[0] != 0:
            raise CheckpointError("sparse matrix indptr does not match its data")
        if nnz and (self.indices.min() < 0 or self.indices.max() >= rows):
            raise CheckpointError("sparse matrix row index out of range")
        out = np.zeros(self.shape, dtype=np.float64)
        cols_of_entries = np.repeat(np.arange(cols), np.diff(self.indptr))
        np.add.at(out, (self.indices.astype(np.int64), cols_of_entries), self.data)
        return out


_PKL_GLOBALS = {
    ("chumpy.ch", "Ch"): _ChumpyStandIn,
    ("chumpy", "Ch"): _ChumpyStandIn,
    ("scipy.sparse.csc", "csc_matrix"): _CscStandIn,
    ("scipy.sparse._csc", "csc_matrix"): _CscStandIn,
    ("scipy.sparse", "csc_matrix"): _CscStandIn,
}


def _plain(value):
    """A stand-in or array-like -> a numpy array."""
    if isinstance(value, _ChumpyStandIn):
        return value.value
    if isinstance(value, _CscStandIn):
        return value.dense()
    return value


def _check_file(path) -> str:
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise CheckpointError(f"{source}: no such file")
    if os.path.getsize(source) == 0:
        raise CheckpointError(f"{source}: file is empty")
    return source


def read_flame_pickle(path) -> dict:
    """Reads `generic_model.pkl` into `{key: numpy array or str}` (chumpy/sparse made dense)."""
    source = _check_file(path)
    with open(source, "rb") as f:
        obj = restricted_unpickle(f, source, extra_globals=_PKL_GLOBALS, encoding="latin1")
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a pickled dict, found {type(obj).__name__}")
    return {str(k): _plain(v) for k, v in obj.items()}


def read_landmark_embedding(path) -> dict:
    """Reads DECA's `landmark_embedding.npy` (a 0-d object array holding a dict of arrays)."""
    source = _check_file(path)
    with open(source, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as err:
            raise CheckpointError(f"{source}: not a valid .npy file ({err})") from None
        if dtype != np.dtype(object) or shape != ():
            raise CheckpointError(f"{source}: expected a 0-d object array, found dtype {dtype} "
                                  f"shape {shape}")
        payload = f.read()
    obj = restricted_unpickle(io.BytesIO(payload), source, encoding="latin1")
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj[()]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected the array to hold a dict, found "
                              f"{type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------

def _get(table: dict, key: str, source: str, shape, kind: str = "f") -> np.ndarray:
    if key not in table:
        raise ConversionError(f"{source}: missing key '{key}'")
    value = np.asarray(table[key])
    if value.dtype == object or value.dtype.kind not in "biuf":
        raise ConversionError(f"{source}: key '{key}' holds {value.dtype}, expected numbers")
    if len(shape) != value.ndim or any(e is not None and e != a for e, a in zip(shape, value.shape)):
        want = tuple("*" if e is None else e for e in shape)
        raise ConversionError(f"{source}: key '{key}' has shape {value.shape}, expected {want}")
    if kind == "i":
        if value.dtype.kind == "f":
            raise ConversionError(f"{source}: key '{key}' has dtype {value.dtype}, expected integers")
        return value.astype(np.int64)
    return value.astype(np.float32)


def convert_flame(pkl_path, embedding_path) -> tuple[dict, dict]:
    """Reads both files and returns `(arrays, arch)`.

    arrays (V vertices, F faces):
      v_template (V, 3) f32; shapedirs (V, 3, 150) f32 (identity 0..99, then expression 0..49);
      posedirs (36, 3V) f32 (row-major over (joint 1..4, 3, 3), column 3v + c);
      J_regressor (5, V) f32 dense; lbs_weights (V, 5) f32; faces (F, 3) int32;
      static_lmk_faces_idx (51,) int32, static_lmk_bary_coords (51, 3) f32;
      dynamic_lmk_faces_idx (79, 17) int32, dynamic_lmk_bary_coords (79, 17, 3) f32;
      full_lmk_faces_idx (68,) int32, full_lmk_bary_coords (68, 3) f32.
    arch: {'parents': [-1, 0, 1, 1, 1], 'n_shape', 'n_exp', 'num_vertices', 'num_faces'}.
    """
    pkl_source, emb_source = os.fspath(pkl_path), os.fspath(embedding_path)
    model = read_flame_pickle(pkl_path)
    v_template = _get(model, "v_template", pkl_source, (None, 3))
    num_v = v_template.shape[0]
    shapedirs = _get(model, "shapedirs", pkl_source, (num_v, 3, None))
    if shapedirs.shape[2] < EXP_OFFSET + N_EXP:
        raise ConversionError(f"{pkl_source}: key 'shapedirs' has {shapedirs.shape[2]} components, "
                              f"expected at least {EXP_OFFSET + N_EXP}")
    posedirs = _get(model, "posedirs", pkl_source, (num_v, 3, (NUM_JOINTS - 1) * 9))
    faces = _get(model, "f", pkl_source, (None, 3), kind="i")
    if faces.size and (faces.min() < 0 or faces.max() >= num_v):
        raise ConversionError(f"{pkl_source}: key 'f' indexes vertices outside 0..{num_v - 1}")
    kintree = _get(model, "kintree_table", pkl_source, (2, NUM_JOINTS), kind="i")
    parents = [-1] + [int(p) for p in kintree[0, 1:]]
    if any(not 0 <= p < j for j, p in enumerate(parents) if j):
        raise ConversionError(f"{pkl_source}: key 'kintree_table' has parents {parents}; each joint's "
                              "parent must come before it")
    arrays = {
        "v_template": v_template,
        "shapedirs": np.concatenate([shapedirs[..., :N_SHAPE],
                                     shapedirs[..., EXP_OFFSET:EXP_OFFSET + N_EXP]], axis=2),
        "posedirs": np.ascontiguousarray(posedirs.reshape(-1, posedirs.shape[-1]).T),
        "J_regressor": _get(model, "J_regressor", pkl_source, (NUM_JOINTS, num_v)),
        "lbs_weights": _get(model, "weights", pkl_source, (num_v, NUM_JOINTS)),
        "faces": faces.astype(np.int32),
    }

    emb = read_landmark_embedding(embedding_path)
    num_f = faces.shape[0]
    for prefix, shape in (("static", (NUM_STATIC,)), ("dynamic", (NUM_DYNAMIC_ROWS, NUM_CONTOUR)),
                          ("full", (1, NUM_LANDMARKS))):
        idx = _get(emb, f"{prefix}_lmk_faces_idx", emb_source, shape, kind="i")
        bary = _get(emb, f"{prefix}_lmk_bary_coords", emb_source, shape + (3,))
        if idx.size and (idx.min() < 0 or idx.max() >= num_f):
            raise ConversionError(f"{emb_source}: key '{prefix}_lmk_faces_idx' indexes faces outside "
                                  f"0..{num_f - 1}")
        if prefix == "full":  # stored with a leading batch axis of 1
            idx, bary = idx[0], bary[0]
        arrays[f"{prefix}_lmk_faces_idx"] = idx.astype(np.int32)
        arrays[f"{prefix}_lmk_bary_coords"] = bary
    arch = {"parents": parents, "n_shape": N_SHAPE, "n_exp": N_EXP,
            "num_vertices": int(num_v), "num_faces": int(num_f)}
    return arrays, arch


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
