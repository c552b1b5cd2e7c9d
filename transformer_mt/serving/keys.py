"""Optional API keys, one per line of a file, compared in constant time."""
from __future__ import annotations

import hmac
from pathlib import Path

from ..errors import UserError
from .requests import BadRequest


class ApiKeys:
    def __init__(self, keys: list[str]):
        self._keys = [key.encode("utf-8") for key in keys]

    @classmethod
    def from_file(cls, path: Path | None) -> "ApiKeys":
        """No file: no keys asked for. Blank lines and lines starting with # are not keys."""
        if path is None:
            return cls([])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read --api-keys {path}: {getattr(err, 'strerror', None) or err}") from None
        keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise UserError(f"--api-keys {path} holds no key (one per line)")
        return cls(keys)

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def check(self, given) -> None:
        """403, as LibreTranslate answers, for a missing or wrong key where keys are required."""
        if not self._keys:
            return
        candidate = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else b""
        # Every key is compared, so the time taken says nothing about which one nearly matched.
        matched = [hmac.compare_digest(candidate, key) for key in self._keys]
        if not any(matched):
            raise BadRequest("Invalid API key" if given else "Missing API key: pass api_key", 403)
