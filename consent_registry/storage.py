"""File storage behind one small interface: a local folder (default) or an S3-compatible bucket.

`CONSENT_REGISTRY_STORAGE` picks the implementation: `local` keeps files under `UPLOAD_DIR`, `s3` keeps
them in `S3_BUCKET` (under `S3_PREFIX`, at `S3_ENDPOINT_URL` for S3-compatible stores, in `S3_REGION`)
with server-side encryption. Keys are always generated here (`<prefix>/<random hex>`) and checked on
every call, so no file or object name is ever derived from user input. Large files are streamed in
chunks both ways and never held whole in memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from flask import Flask, current_app

from .config import ENV_PREFIX, BaseConfig

SETTING = f"{ENV_PREFIX}STORAGE"
CHUNK = 1024 * 1024  # bytes per read/write when streaming
# S3 refuses multipart parts under 5 MiB (except the last) and more than 10,000 parts.
S3_MIN_PART = 5 * 1024 * 1024
S3_MAX_PARTS = 10_000
SSE = "AES256"

_SEGMENT = r"[a-z0-9_-]+"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


class StorageKeyError(KeyError):
    """No stored file under this key."""


def check_key(key: str) -> str:
    """The key itself if it is well-formed; ValueError for anything that could escape or mislead.

    Only lowercase letters, digits, `_`, `-` and `/` between non-empty segments: so no `..`, no
    absolute paths, no backslashes, no dots at all (temporary files contain one and can never be named).
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"bad storage key: {key!r}")
    return key


def new_key(prefix: str) -> str:
    """A fresh random key under a prefix chosen by the code (never by a user)."""
    check_key(prefix)
    return f"{prefix}/{secrets.token_hex(16)}"


@runtime_checkable
class Storage(Protocol):
    """Where uploaded files live; keys are generated, never taken from user input."""

    def put(self, data: bytes, *, prefix: str) -> str:
        """Store bytes and return their new key."""

    def put_stream(self, stream: BinaryIO, *, prefix: str, size_hint: int | None = None) -> str:
        """Store everything a stream yields, chunk by chunk, and return the new key."""

    def get(self, key: str) -> bytes:
        """The bytes under a key (StorageKeyError if there are none)."""

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A binary stream of a stored file, closed on leaving the `with` (StorageKeyError if missing)."""

    def delete(self, key: str) -> None:
        """Remove a key; no error when it is gone already."""

    def exists(self, key: str) -> bool:
        """Whether a file is stored under the key."""

    def size(self, key: str) -> int:
        """The size in bytes of a stored file (StorageKeyError if missing)."""


class _RawSource(io.RawIOBase):
    """Any readable binary stream as a raw stream.

    Wrapped in io.BufferedReader, read(n) then fills one bytes object of n bytes straight from the
    source, read after read, until n bytes or the end: network and request streams return short
    reads, and the S3 transfer manager takes each read as a whole part (S3 refuses parts under
    5 MiB in the middle of an upload). One part is thus in memory once, never twice.
    """

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._readinto = getattr(source, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._readinto is not None:
            return self._readinto(buffer) or 0
        data = self._source.read(min(len(buffer), CHUNK))
        buffer[: len(data)] = data
        return len(data)


def _full_reads(source: BinaryIO) -> BinaryIO:
    """A non-seekable stream over the source whose read(n) returns n bytes unless it has ended."""
    return io.BufferedReader(_RawSource(source), buffer_size=64 * 1024)  # type: ignore[return-value]


class LocalStorage:
    """Files under a folder: written atomically, files 0600 and folders 0700."""

    def __init__(self, root: Path | str) -> None:
        """Keep the folder (created 0700 on the first write if it is missing)."""
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        """The file of a key; keys with path tricks are refused."""
        return self.root.joinpath(*check_key(key).split("/"))

    def _make_folders(self, folder: Path) -> None:
        """Create the folder and any missing parents under the root, each 0700."""
        missing = []
        for candidate in (folder, *folder.parents):
            if candidate.is_dir():
                break
            missing.append(candidate)
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)

    def _write(self, key: str, write: Any) -> str:
        """Write through a temporary file (0600, same folder) and rename it into place."""
        path = self._path(key)
        self._make_folders(path.parent)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return key

    def put(self, data: bytes, *, prefix: str) -> str:
        """Store bytes under a new key; a reader never sees half a file."""
        return self._write(new_key(prefix), lambda handle: handle.write(data))

    def put_stream(self, stream: BinaryIO, *, prefix: str, size_hint: int | None = None) -> str:
        """Copy a stream into a new file in chunks of 1 MiB; the size hint is not needed here."""
        return self._write(new_key(prefix), lambda handle: shutil.copyfileobj(stream, handle, CHUNK))

    def get(self, key: str) -> bytes:
        """Read a stored file."""
        with self.open(key) as handle:
            return handle.read()

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The stored file opened for reading; it is its own context manager."""
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageKeyError(key) from None

    def delete(self, key: str) -> None:
        """Remove a stored file; a key naming nothing (or only a folder) is already gone."""
        path = self._path(key)
        if path.is_dir():
            return
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    def exists(self, key: str) -> bool:
        """Whether a file is stored under the key."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """The size of a stored file."""
        path = self._path(key)
        if not path.is_file():
            raise StorageKeyError(key)
        return path.stat().st_size


class _S3Body(io.RawIOBase):
    """An S3 response body as a raw stream, so io.BufferedReader makes it a full binary file."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage:
    """Objects in an S3 (or S3-compatible) bucket under a prefix, always encrypted at rest (SSE AES256)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None) -> None:
        """Keep the bucket and prefix; make a boto3 client unless one is given (credentials as usual)."""
        if not bucket:
            raise ValueError(f"S3 storage needs a bucket: set {ENV_PREFIX}S3_BUCKET")
        prefix = (prefix or "").strip("/")
        if prefix and (".." in prefix.split("/") or "" in prefix.split("/") or "\\" in prefix):
            raise ValueError(f"bad S3 prefix: {prefix!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.client = client if client is not None else self._make_client(endpoint_url, region)

    @staticmethod
    def _make_client(endpoint_url: str | None, region: str | None) -> Any:
        """A boto3 S3 client with timeouts and retries; path-style addressing for custom endpoints."""
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "connect_timeout": 10, "read_timeout": 60,
            "retries": {"max_attempts": 5, "mode": "standard"},
        }
        if endpoint_url:
            # S3-compatible stores (MinIO, Ceph, ...) rarely do virtual-host buckets, and many refuse
            # the checksum headers boto3 sends by default since 1.36.
            options.update(s3={"addressing_style": "path"},
                           request_checksum_calculation="when_required",
                           response_checksum_validation="when_required")
        session = boto3.session.Session()  # one per storage: the default session is not thread-safe
        return session.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                              config=Config(**options))

    def _object(self, key: str) -> str:
        """The object name of a key: under the prefix."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _missing(error: Exception) -> bool:
        """Whether a botocore error says the object does not exist."""
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
        return code in {"NoSuchKey", "404", "NotFound"}

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (for tests and first-time setup; nothing else creates it)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        args: dict[str, Any] = {"Bucket": self.bucket}
        region = self.region or self.client.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**args)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    def put(self, data: bytes, *, prefix: str) -> str:
        """Store bytes as a new encrypted object."""
        key = new_key(prefix)
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data,
                               ServerSideEncryption=SSE)
        return key

    def put_stream(self, stream: BinaryIO, *, prefix: str, size_hint: int | None = None) -> str:
        """Upload a stream part by part (multipart above one part), one part in memory at a time.

        The size hint, when known, grows the parts so that a very large file stays within S3's
        10,000 parts.
        """
        from boto3.s3.transfer import TransferConfig

        part = S3_MIN_PART
        if size_hint and size_hint > part * (S3_MAX_PARTS - 1):
            part = -(-size_hint // (S3_MAX_PARTS - 1))
        config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, use_threads=False,
                                preferred_transfer_client="classic")
        key = new_key(prefix)
        self.client.upload_fileobj(_full_reads(stream), self.bucket, self._object(key),
                                   ExtraArgs={"ServerSideEncryption": SSE}, Config=config)
        return key

    def get(self, key: str) -> bytes:
        """The whole object (use open() for large ones)."""
        with self.open(key) as handle:
            return handle.read()

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """The object's body as a buffered binary stream, read from the network as it is consumed."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as error:
            if self._missing(error):
                raise StorageKeyError(key) from None
            raise
        return io.BufferedReader(_S3Body(response["Body"]), buffer_size=CHUNK)  # type: ignore[return-value]

    def delete(self, key: str) -> None:
        """Remove an object; S3 itself does not mind a missing one."""
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata, or None if it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as error:
            if self._missing(error):
                return None
            raise

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key."""
        return self._head(key) is not None

    def size(self, key: str) -> int:
        """The size of a stored object."""
        head = self._head(key)
        if head is None:
            raise StorageKeyError(key)
        return int(head["ContentLength"])


def storage_for(app: Flask) -> Storage:
    """The storage an app's configuration asks for (STORAGE: "local", the default, or "s3")."""
    config = app.config
    kind = str(config.get("STORAGE") or "local").strip().lower()
    if kind == "local":
        return LocalStorage(Path(config.get("UPLOAD_DIR") or BaseConfig.UPLOAD_DIR))
    if kind == "s3":
        return S3Storage(
            bucket=config.get("S3_BUCKET") or "",
            prefix=config.get("S3_PREFIX") or "",
            endpoint_url=config.get("S3_ENDPOINT_URL") or None,
            region=config.get("S3_REGION") or None,
        )
    raise ValueError(f"{SETTING} must be 'local' or 's3', not {config.get('STORAGE')!r}")


def init_app(app: Flask) -> None:
    """Build the app's storage once (a bad setting fails at start-up) and keep it in app.extensions."""
    app.extensions["storage"] = storage_for(app)


def get_storage() -> Storage:
    """The storage of the current app; built from its config if init_app has not run."""
    storage = current_app.extensions.get("storage")
    return storage if storage is not None else storage_for(current_app)


SCAN_TYPES = {b"%PDF-": "application/pdf", b"\xff\xd8\xff": "image/jpeg",
              b"\x89PNG\r\n\x1a\n": "image/png"}


def scan_type(data: bytes) -> str | None:
    """The media type of a scanned form judged by its content (PDF, JPEG or PNG), or None."""
    return next((kind for magic, kind in SCAN_TYPES.items() if data.startswith(magic)), None)
