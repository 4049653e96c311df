"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class FacesieveError(Exception):
    """A problem with the user's input or environment (bad path, refused output, missing model)."""

    exit_code = 1


class UsageError(FacesieveError):
    """The request itself is refused (e.g. an output folder inside the input): exit code 2."""

    exit_code = 2
