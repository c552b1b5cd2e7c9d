"""Shared command-line plumbing: bad input becomes one line on stderr and exit status 2."""
from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import UserError


def main_guard(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(code or 0)
