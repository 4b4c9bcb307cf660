"""The one exception type for bad user input (a leaf module anyone may import)."""


class InputError(Exception):
    """A problem with what the user asked for or supplied; the CLI prints it as one line and exits 2."""
