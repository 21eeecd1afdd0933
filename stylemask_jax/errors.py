"""The one exception type for bad user input (the CLI prints it as a one-line error, exit 2)."""


class UserInputError(ValueError):
    """Bad input from the user: a missing file, a wrong shape, an invalid argument."""
