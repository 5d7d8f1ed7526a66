"""The storage interface: one set of behaviour tests run on the local folder and on a real S3 server."""

from __future__ import annotations

import hashlib
import io
import re
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from consent_registry.storage import (
    S3_MIN_PART,
    LocalStorage,
    S3Storage,
    Storage,
    StorageKeyError,
    get_storage,
    init_app,
    storage_for,
)

from s3_server import REGION, S3TestServer

MiB = 1024 * 1024
BIG = 20 * MiB
S3_PREFIX = "registry/test"
BAD_KEYS = ["", "..", "../x", "scans/../../etc/passwd", "/etc/passwd", "/scans/x", "scans//x", "scans/x/",
            "Scans/ABC", "scans/x.tmp", "scans\\x", "scans/x y", "scans/x\x00", "~/x", "c:/x"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    """moto's standalone S3 server on 127.0.0.1, one for the whole session."""
    with S3TestServer() as server:
        yield server


@pytest.fixture
def aws_env(s3_server: S3TestServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3TestServer:
    """Dummy credentials in the environment, and no developer's AWS profile read."""
    for name, value in s3_server.credentials().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_storage(aws_env: S3TestServer) -> S3Storage:
    """S3 storage in a fresh bucket, with a client built the way the app builds it."""
    return S3Storage(bucket=aws_env.new_bucket(), prefix=S3_PREFIX, endpoint_url=aws_env.endpoint_url,
                     region=REGION)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each implementation: a folder under tmp_path, or a fresh bucket on the S3 server."""
    if request.param == "local":
        return LocalStorage(tmp_path / "uploads")
    return request.getfixturevalue("s3_storage")


def stored_names(storage: Storage) -> list[str]:
    """Every file or object the storage holds, temporary ones included, as raw names."""
    if isinstance(storage, LocalStorage):
        root = storage.root
        files = root.rglob("*") if root.exists() else []
        return sorted(str(p.relative_to(root)) for p in files if p.is_file())
    assert isinstance(storage, S3Storage)
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


class ChunkStream(io.RawIOBase):
    """`total` bytes made on the fly, at most `chunk` per read (short reads, like a network stream).

    The digest of everything handed out is kept, so nothing needs to be held to compare afterwards.
    """

    def __init__(self, total: int, chunk: int = 64 * 1024, fail_after: int | None = None) -> None:
        super().__init__()
        self.left = total
        self.chunk = chunk
        self.fail_after = fail_after
        self.given = 0
        self.sha256 = hashlib.sha256()
        self.counter = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.fail_after is not None and self.given >= self.fail_after:
            raise OSError("the client went away")
        wanted = self.chunk if size is None or size < 0 else min(size, self.chunk)
        wanted = min(wanted, self.left)
        if wanted <= 0:
            return b""
        self.counter += 1
        block = hashlib.sha256(self.counter.to_bytes(8, "big")).digest() * (wanted // 32 + 1)
        data = block[:wanted]
        self.left -= wanted
        self.given += wanted
        self.sha256.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peak_memory(action: Any) -> tuple[Any, int]:
    """What an action returns, and the most memory Python held at once while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = action()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_bytes_round_trip(storage: Storage) -> None:
    """put then get gives the same bytes; exists and size agree; an empty file is fine too."""
    data = b"%PDF-1.7 a scanned consent form\x00\xff" * 100
    key = storage.put(data, prefix="scans")
    assert storage.get(key) == data
    assert storage.exists(key) and storage.size(key) == len(data)
    with storage.open(key) as handle:
        assert handle.read(5) == b"%PDF-" and handle.read() == data[5:]
    empty = storage.put(b"", prefix="scans")
    assert storage.get(empty) == b"" and storage.size(empty) == 0 and storage.exists(empty)


def test_large_stream_is_never_whole_in_memory(storage: Storage) -> None:
    """A 20 MB stream arriving in short chunks is stored and read back with little memory."""
    # Local copies 1 MiB at a time; S3 holds one part (5 MiB, the least S3 accepts) plus I/O buffers.
    limit = 2 * MiB if isinstance(storage, LocalStorage) else S3_MIN_PART + 4 * MiB
    stream = ChunkStream(BIG)
    key, peak = peak_memory(lambda: storage.put_stream(stream, prefix="media"))
    assert stream.given == BIG
    assert peak < limit, f"put_stream held {peak / MiB:.1f} MiB at once"
    assert storage.size(key) == BIG

    def read_back() -> tuple[str, int]:
        digest, total = hashlib.sha256(), 0
        with storage.open(key) as handle:
            while chunk := handle.read(256 * 1024):
                digest.update(chunk)
                total += len(chunk)
        return digest.hexdigest(), total

    (digest, total), peak = peak_memory(read_back)
    assert (digest, total) == (stream.sha256.hexdigest(), BIG)
    assert peak < 4 * MiB, f"open held {peak / MiB:.1f} MiB at once"


def test_small_stream_and_size_hint(storage: Storage) -> None:
    """A stream smaller than one part is one plain object; the size hint is only a hint."""
    key = storage.put_stream(io.BytesIO(b"\x89PNG\r\n\x1a\n tiny"), prefix="media", size_hint=17)
    assert storage.get(key) == b"\x89PNG\r\n\x1a\n tiny"
    assert storage.get(storage.put_stream(io.BytesIO(b""), prefix="media")) == b""


def test_failed_stream_leaves_nothing(storage: Storage) -> None:
    """A stream that breaks off half-way stores nothing, not even a temporary file or a part."""
    with pytest.raises(OSError, match="went away"):
        storage.put_stream(ChunkStream(12 * MiB, fail_after=7 * MiB), prefix="media")
    assert stored_names(storage) == []


def test_keys_are_generated_unique_and_shaped(storage: Storage) -> None:
    """Keys are `<prefix>/<32 hex>`, all different, even for equal content."""
    keys = [storage.put(b"same", prefix="scans") for _ in range(10)]
    keys.append(storage.put_stream(io.BytesIO(b"same"), prefix="media/originals"))
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"scans/[0-9a-f]{32}", key) for key in keys[:-1])
    assert re.fullmatch(r"media/originals/[0-9a-f]{32}", keys[-1])


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(storage: Storage, key: str) -> None:
    """Every call checks its key: no `..`, no absolute paths, nothing outside [a-z0-9/_-]."""
    for call in (storage.get, storage.open, storage.delete, storage.exists, storage.size):
        with pytest.raises(ValueError, match="bad storage key"):
            call(key)
    with pytest.raises(ValueError, match="bad storage key"):
        storage.put(b"x", prefix=key)
    with pytest.raises(ValueError, match="bad storage key"):
        storage.put_stream(io.BytesIO(b"x"), prefix=key)
    assert stored_names(storage) == []


def test_missing_keys(storage: Storage) -> None:
    """A missing key raises StorageKeyError (a KeyError) on get/open/size; delete is idempotent."""
    key = storage.put(b"gone soon", prefix="scans")
    storage.delete(key)
    for missing in (key, "scans/0123456789abcdef0123456789abcdef", "scans", "never/stored"):
        assert not storage.exists(missing)
        for call in (storage.get, storage.size):
            with pytest.raises(StorageKeyError):
                call(missing)
        with pytest.raises(KeyError), storage.open(missing):
            pass
        storage.delete(missing)
    assert stored_names(storage) == []


def test_delete_removes_only_its_key(storage: Storage) -> None:
    """Deleting one file keeps the others."""
    first, second = storage.put(b"one", prefix="scans"), storage.put(b"two", prefix="scans")
    storage.delete(first)
    assert not storage.exists(first) and storage.get(second) == b"two"


def test_local_files_are_private_and_atomic(tmp_path: Path) -> None:
    """Files 0600, folders 0700, no temporary files left, each key a file at root/key."""
    root = tmp_path / "uploads"
    local = LocalStorage(root)
    keys = [local.put(b"scan", prefix="scans"),
            local.put_stream(ChunkStream(3 * MiB), prefix="media/originals")]
    for key in keys:
        path = root / key
        assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
        for folder in path.relative_to(root).parents:
            if folder != Path("."):
                assert stat.S_IMODE((root / folder).stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stored_names(local) == sorted(keys)


def test_s3_objects_are_encrypted_and_under_the_prefix(s3_storage: S3Storage) -> None:
    """Plain and multipart uploads carry SSE AES256 and live under the configured prefix."""
    storage = s3_storage
    keys = [storage.put(b"scan", prefix="scans"),
            storage.put_stream(ChunkStream(11 * MiB), prefix="media")]  # three parts
    assert stored_names(storage) == sorted(f"{S3_PREFIX}/{key}" for key in keys)
    for key in keys:
        head = storage.client.head_object(Bucket=storage.bucket, Key=f"{S3_PREFIX}/{key}")
        assert head["ServerSideEncryption"] == "AES256"
    multipart = storage.client.head_object(Bucket=storage.bucket, Key=f"{S3_PREFIX}/{keys[1]}")
    assert multipart["ETag"].strip('"').endswith("-3")


def app_with(**settings: Any) -> Flask:
    """A bare Flask app with the given settings (no factory needed for storage)."""
    app = Flask(__name__)
    app.config.update(settings)
    return app


def test_storage_for_local_by_default(tmp_path: Path) -> None:
    """Without STORAGE the app stores files under UPLOAD_DIR; get_storage works before init_app."""
    app = app_with(UPLOAD_DIR=str(tmp_path / "media-a"))
    chosen = storage_for(app)
    assert isinstance(chosen, LocalStorage) and chosen.root == tmp_path / "media-a"
    with app.app_context():
        key = get_storage().put(b"x", prefix="scans")
    assert (tmp_path / "media-a" / key).read_bytes() == b"x"
    assert isinstance(storage_for(app_with(STORAGE="local", UPLOAD_DIR=str(tmp_path))), LocalStorage)


def test_storage_for_s3_and_init_app(aws_env: S3TestServer) -> None:
    """STORAGE=s3 builds an S3 storage from the settings; init_app keeps it for get_storage."""
    app = app_with(STORAGE="s3", S3_BUCKET="registry-media", S3_PREFIX="/school-1/",
                   S3_ENDPOINT_URL=aws_env.endpoint_url, S3_REGION=REGION)
    init_app(app)
    chosen = app.extensions["storage"]
    assert isinstance(chosen, S3Storage)
    assert (chosen.bucket, chosen.prefix) == ("registry-media", "school-1")
    chosen.ensure_bucket()
    chosen.ensure_bucket()  # a second time is fine
    with app.app_context():
        assert get_storage() is chosen
        key = get_storage().put(b"scan", prefix="scans")
    head = aws_env.client().head_object(Bucket="registry-media", Key=f"school-1/{key}")
    assert head["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize("settings", [{"STORAGE": "ftp"}, {"STORAGE": "S3 bucket"}])
def test_storage_for_refuses_unknown_kinds(settings: dict[str, str]) -> None:
    """An unknown STORAGE fails loudly, naming the environment variable to fix."""
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_STORAGE"):
        storage_for(app_with(**settings))


def test_s3_needs_a_bucket() -> None:
    """STORAGE=s3 without a bucket names the missing setting."""
    with pytest.raises(ValueError, match="CONSENT_REGISTRY_S3_BUCKET"):
        storage_for(app_with(STORAGE="s3", S3_REGION=REGION))
