"""The one error family of the project (the CLI prints any of them as one line, exit 2).

    StylemaskError            base: a problem the user can fix (input, files, checkpoints)
      UserInputError          bad input: a missing file, a wrong shape, an invalid argument
        WeightsError          (stylemask_jax.weights) a converted-weights folder is wrong
      CheckpointError         an official checkpoint cannot be read or does not fit the network
        UnsafePickleError     (convert_weights.torch_reader) a pickle global off the allow-list
        ConversionError       (convert_weights.common) a missing, unexpected or misshapen key

This module imports nothing, so the library, the converters and the guard can all use it.
"""


class StylemaskError(ValueError):
    """Base of every error the command line reports as `stylemask: error: ...` (exit 2)."""


class UserInputError(StylemaskError):
    """Bad input from the user: a missing file, a wrong shape, an invalid argument."""


class CheckpointError(StylemaskError):
    """A checkpoint file cannot be read: corrupt, truncated, or not what was expected."""
