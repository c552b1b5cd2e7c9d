"""What every export shares: a folder built aside and renamed into place,
so that a failed export leaves nothing that looks finished and an earlier export survives until the new
one is whole."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError


def check_output(output: Path, force: bool) -> None:
    """Refused before any work: a file in the way, or an export (or anything) there without --force."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UserError(f"--output {output} exists and is not empty: pass --force to replace it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--output {output}: cannot create {output.parent} ({err.strerror or err})") from None


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A folder path beside `output` (not yet created) to build the export in; renamed over `output` when
    the block ends without error, removed when it fails. A write that fails is one line."""
    staging = output.with_name(f".{output.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        _move_into_place(staging, output)
    except OSError as err:
        raise UserError(f"cannot write the export {output}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename the finished export over `output`; an earlier one is removed only after that."""
    old = output.with_name(f".{output.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)
