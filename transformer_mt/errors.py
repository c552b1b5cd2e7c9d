"""The one exception type the command-line tools turn into a one-line message."""


class UserError(Exception):
    """Bad input from the user (config, paths, sentences): reported without a traceback."""


class StoppedByRank0(Exception):
    """Raised on the other ranks of a data-parallel run when rank 0 stops on a UserError: rank 0 alone
    reports it, so the message is printed once, and the other ranks leave quietly instead of dying in
    their next collective with a 'connection reset' traceback."""
