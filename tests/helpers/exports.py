"""The checks every export format must pass."""
from pathlib import Path
from typing import Callable

import pytest

from transformer_mt.errors import UserError


def check_force_and_failure(root: Path, export: Callable[[Path, bool], object], finished: Callable[[Path], bool],
                            monkeypatch, writer: type, method: str) -> None:
    """An existing non-empty folder is replaced only with force; a write that fails (writer.method
    raising disk full) leaves neither a half-made folder nor its staging folder under root."""
    out = root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty: pass --force"):
        export(out, False)
    export(out, True)
    assert finished(out) and not (out / "keep.txt").exists()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, method, disk_full)
    with pytest.raises(UserError, match=r"cannot write the export .*fresh: No space left on device"):
        export(root / "fresh", False)
    assert sorted(p.name for p in root.iterdir()) == ["out", "tiny"]
