"""File storage behind one small interface; local folder now (S3 arrives with the media issue)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from flask import current_app


class Storage(Protocol):
    """Where uploaded files live; keys are generated, never taken from user input."""

    def put(self, data: bytes, *, prefix: str) -> str:
        """Store bytes and return their new key."""

    def get(self, key: str) -> bytes:
        """The bytes under a key."""

    def delete(self, key: str) -> None:
        """Remove a key; no error when it is gone already."""


class LocalStorage:
    """Files under a folder, written atomically."""

    def __init__(self, root: Path) -> None:
        """Keep the folder."""
        self.root = root

    def _path(self, key: str) -> Path:
        """The file of a key; keys with path tricks are refused."""
        if not key or ".." in key or key.startswith("/") or "\\" in key:
            raise ValueError("bad storage key")
        return self.root / key

    def put(self, data: bytes, *, prefix: str) -> str:
        """Write to a temporary name, then rename, so a reader never sees half a file."""
        key = f"{prefix}/{secrets.token_hex(16)}"
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        """Read a stored file."""
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        """Remove a stored file."""
        self._path(key).unlink(missing_ok=True)


def get_storage() -> Storage:
    """The storage of the current app."""
    return LocalStorage(Path(current_app.config["UPLOAD_DIR"]))


SCAN_TYPES = {b"%PDF-": "application/pdf", b"\xff\xd8\xff": "image/jpeg",
              b"\x89PNG\r\n\x1a\n": "image/png"}


def scan_type(data: bytes) -> str | None:
    """The media type of a scanned form judged by its content (PDF, JPEG or PNG), or None."""
    return next((kind for magic, kind in SCAN_TYPES.items() if data.startswith(magic)), None)
