"""The one exception type the command-line tools turn into a one-line message."""


class UserError(Exception):
    """Bad input from the user (config, paths, sentences): reported without a traceback."""
