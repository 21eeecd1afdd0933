"""Official PyTorch checkpoints -> this project's parameter trees, read without torch."""

from convert_weights.torch_reader import CheckpointError, UnsafePickleError, load_torch_file

__all__ = ["CheckpointError", "UnsafePickleError", "load_torch_file"]
