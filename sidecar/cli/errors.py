"""The one error type commands raise for a problem the user can fix."""


class CliError(Exception):
    """Printed as one line; the command exits 2."""
