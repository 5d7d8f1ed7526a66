"""A fake Facebook Graph API (Pages) on 127.0.0.1, faithful to ../shared/docs/domain.md.

`FakeGraph` is a WSGI app (werkzeug) with its state in plain dicts tests can inspect:

- `posts`:   post id (`<page-id>_<n>`) -> {"message", "photo_ids", "video_id", "created"}
- `photos`:  photo id -> {"bytes", "published", "message", "post_id", "created"}
- `videos`:  video id -> {"bytes", "title", "description", "post_id", "created"}
- `uploads`: "upload:<s>" -> {"file_name", "file_length", "file_type", "data", "handle"}
- `deleted`: ids deleted, in order; `requests`: (method, path) of every request, in order.

It checks the version prefix (unknown or missing: code 100; older than `min_version`: 2635), the
token (`tokens`: token -> permissions; unknown: 190; writing without `pages_manage_posts`: 200),
the page and app ids (unknown object: 100), images (JPEG or PNG under 4 MB), `/feed`'s
`attached_media` (existing unpublished photos of the page, else 100), a text post repeating an
earlier one (506), upload offsets (a wrong `file_offset`: 1363037 with the expected
`start_offset`), and `/videos`' handle (a complete upload, else 100). Every answer carries
`X-App-Usage` (`usage` percent) and, when `business_usage` is set, `X-Business-Use-Case-Usage`.

Faults: `fail_next(pattern, code=..., http_status=..., times=N)` answers the next N requests whose
path matches the regular expression `pattern` with that Graph error (or a bare HTTP error without a
Graph body: `code=None`); `delay_next(pattern, seconds)` answers them late (after doing the work,
so a client that gives up may still have posted; `before=True` delays before the work).

Tests use the `fake_graph` fixture (started on 127.0.0.1 in a thread); for development run
`python tests/fake_graph.py --port 8089 --token dev-token`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

HOST = "127.0.0.1"
PAGE_ID = "1122334455"
APP_ID = "9988776655"
TOKEN = "fake-page-token"
PERMISSIONS = frozenset({"pages_manage_posts", "pages_read_engagement"})
VERSIONS = ("v22.0", "v23.0", "v24.0", "v25.0")
MIN_VERSION = 22
MAX_PHOTO_BYTES = 4 * 1024 * 1024
OFFSET_MISMATCH = 1363037
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)$")
STATUS_OF = {1: 500, 2: 503, 10: 403, 190: 400, **{code: 403 for code in range(200, 300)}}
TYPE_OF = {190: "OAuthException", 1: "OAuthException", 2: "OAuthException", 4: "OAuthException",
           17: "OAuthException", 32: "OAuthException", 10: "OAuthException", 200: "OAuthException"}


@dataclass
class Fault:
    """What the next `times` requests matching `pattern` get instead of (or besides) their answer."""

    pattern: re.Pattern[str]
    times: int
    method: str | None = None
    code: int | None = None
    http_status: int | None = None
    message: str | None = None
    subcode: int | None = None
    delay: float = 0.0
    before: bool = False
    skip: int = 0


class GraphFailure(Exception):
    """A Graph error answer."""

    def __init__(self, code: int, message: str, *, status: int | None = None, subcode: int | None = None,
                 data: dict | None = None) -> None:
        """Keep what the answer says."""
        super().__init__(message)
        self.code, self.message, self.subcode, self.data = code, message, subcode, data
        self.status = status or STATUS_OF.get(code, 400)


class FakeGraph:
    """The fake Graph API: a WSGI app, its state and the faults to inject."""

    def __init__(self, *, page_id: str = PAGE_ID, app_id: str = APP_ID, token: str = TOKEN,
                 versions: tuple[str, ...] = VERSIONS, min_version: int = MIN_VERSION) -> None:
        """An empty Page whose `token` has both permissions."""
        self.page_id, self.app_id, self.token = page_id, app_id, token
        self.tokens: dict[str, set[str]] = {token: set(PERMISSIONS)}
        self.versions, self.min_version = set(versions), min_version
        self.usage = 5
        self.business_usage: int | None = None
        self.regain_minutes: int | None = None
        self.posts: dict[str, dict[str, Any]] = {}
        self.photos: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.url = ""
        self.lock = threading.RLock()
        self._ids = itertools.count(500000000000001)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration, faults and helpers for tests --------------------------------------------

    def add_token(self, token: str, permissions: set[str] | frozenset[str] = PERMISSIONS) -> None:
        """Accept another token with these permissions (e.g. without pages_manage_posts)."""
        with self.lock:
            self.tokens[token] = set(permissions)

    def fail_next(self, pattern: str, *, code: int | None = 1, http_status: int | None = None,
                  times: int = 1, message: str | None = None, subcode: int | None = None,
                  method: str | None = None, skip: int = 0) -> None:
        """Answer the next `times` requests matching `pattern` (after `skip` of them) with this error.

        `code=None` answers a bare HTTP error (default 502) without a Graph error body."""
        with self.lock:
            self.faults.append(Fault(re.compile(pattern), times, method, code, http_status, message, subcode,
                                     skip=skip))

    def delay_next(self, pattern: str, seconds: float, *, times: int = 1, before: bool = False,
                   method: str | None = None, skip: int = 0) -> None:
        """Answer the next `times` requests matching `pattern` `seconds` late (after the work by default)."""
        with self.lock:
            self.faults.append(Fault(re.compile(pattern), times, method, delay=seconds, before=before,
                                     skip=skip))

    def settings(self, **overrides: Any) -> Any:
        """GraphSettings pointing at this server."""
        from consent_registry.publishing.facebook import GraphSettings

        values = {"graph_url": self.url, "version": "v24.0", "page_id": self.page_id,
                  "page_token": self.token, "app_id": self.app_id, **overrides}
        return GraphSettings(**values)

    def config(self) -> dict[str, str]:
        """The FACEBOOK_* app settings pointing at this server."""
        return {"FACEBOOK_GRAPH_URL": self.url, "FACEBOOK_GRAPH_VERSION": "v24.0",
                "FACEBOOK_PAGE_ID": self.page_id, "FACEBOOK_PAGE_TOKEN": self.token,
                "FACEBOOK_APP_ID": self.app_id}

    def live_posts(self) -> dict[str, dict[str, Any]]:
        """The posts not deleted."""
        with self.lock:
            return {key: value for key, value in self.posts.items() if key not in self.deleted}

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.pattern.search(path) and fault.method in (None, method):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- the WSGI app ---------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Any:
        """Answer one request."""
        request = Request(environ)
        with self.lock:
            self.requests.append((request.method, request.path))
        fault = self._take_fault(request.method, request.path)
        if fault and fault.delay and fault.before:
            time.sleep(fault.delay)
        if fault and not fault.delay:
            if fault.code is None:
                response = Response("<html>Bad gateway</html>", status=fault.http_status or 502,
                                    content_type="text/html")
            else:
                response = self._error(GraphFailure(
                    fault.code, fault.message or f"(#{fault.code}) Injected error",
                    status=fault.http_status, subcode=fault.subcode))
        else:
            try:
                response = self._json(self._dispatch(request))
            except GraphFailure as failure:
                response = self._error(failure)
        if fault and fault.delay and not fault.before:
            time.sleep(fault.delay)
        response.headers["X-App-Usage"] = json.dumps(
            {"call_count": self.usage, "total_cputime": max(0, self.usage - 3), "total_time": self.usage})
        if self.business_usage is not None:
            entry: dict[str, Any] = {"type": "pages", "call_count": self.business_usage,
                                     "total_cputime": 1, "total_time": 1}
            if self.regain_minutes is not None:
                entry["estimated_time_to_regain_access"] = self.regain_minutes
            response.headers["X-Business-Use-Case-Usage"] = json.dumps({self.page_id: [entry]})
        return response(environ, start_response)

    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _error(self, failure: GraphFailure) -> Response:
        error: dict[str, Any] = {"message": failure.message,
                                 "type": TYPE_OF.get(failure.code, "GraphMethodException"),
                                 "code": failure.code, "fbtrace_id": secrets.token_urlsafe(8)}
        if failure.subcode is not None:
            error["error_subcode"] = failure.subcode
        if failure.code in (1, 2):
            error["is_transient"] = True
        if failure.data:
            error["error_data"] = failure.data
        return self._json({"error": error}, failure.status)

    def _dispatch(self, request: Request) -> Any:
        parts = [part for part in request.path.split("/") if part]
        match = VERSION_RE.match(parts[0]) if parts else None
        if not match or parts[0] not in self.versions:
            if match and int(match.group(1)) < self.min_version:
                raise GraphFailure(2635, f"(#2635) You are calling a deprecated version of the Graph API "
                                   f"({parts[0]}). Please update to the latest version.")
            raise GraphFailure(100, "Unknown path components: a known API version prefix (/vNN.0/) is "
                               "required", subcode=2500)
        parts = parts[1:]
        upload = bool(parts) and parts[0].startswith("upload:")
        permissions = self._authorise(request, upload)
        method = request.method
        if method in ("POST", "DELETE") and "pages_manage_posts" not in permissions:
            raise GraphFailure(200, "(#200) The permission(s) pages_manage_posts are not available. It "
                               "could because either they require an advanced access or your app is "
                               "not approved.")
        with self.lock:
            if upload and len(parts) == 1:
                if method == "POST":
                    return self._upload_chunk(request, parts[0])
                return self._upload_status(parts[0])
            if len(parts) == 2 and method == "POST" and parts[1] == "uploads":
                return self._start_upload(request, parts[0])
            if len(parts) == 2 and parts[1] in ("photos", "feed", "videos"):
                self._check_page(parts[0])
                if method == "POST":
                    return getattr(self, f"_post_{parts[1]}")(request)
                if method == "GET" and parts[1] == "feed":
                    return {"data": [{"id": key, "message": post["message"]}
                                     for key, post in reversed(self.live_posts().items())]}
            if len(parts) == 1 and method == "DELETE":
                return self._delete(parts[0])
            if len(parts) == 1 and method == "GET":
                return self._get(parts[0])
        raise GraphFailure(100, f"Unsupported {method.lower()} request.", subcode=33)

    def _authorise(self, request: Request, upload: bool) -> set[str]:
        header = request.headers.get("Authorization", "")
        token = header[6:].strip() if header.startswith("OAuth ") else None
        if not upload:
            token = request.values.get("access_token") or token
        if not token:
            raise GraphFailure(104, "An access token is required to request this resource.")
        permissions = self.tokens.get(token)
        if permissions is None:
            raise GraphFailure(190, "Invalid OAuth access token - Cannot parse access token", subcode=463)
        return permissions

    def _check_page(self, page_id: str) -> None:
        if page_id != self.page_id:
            raise GraphFailure(100, f"Unsupported post request. Object with ID '{page_id}' does not exist, "
                               "cannot be loaded due to missing permissions, or does not support this "
                               "operation.", subcode=33)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _new_post(self, message: str | None, photo_ids: list[str], video_id: str | None = None) -> str:
        post_id = f"{self.page_id}_{self._next_id()}"
        self.posts[post_id] = {"message": message, "photo_ids": photo_ids, "video_id": video_id,
                               "created": self._now()}
        return post_id

    def _post_photos(self, request: Request) -> dict[str, str]:
        source = request.files.get("source")
        if source is None:
            if request.values.get("url"):
                raise GraphFailure(100, "(#100) The fake Graph server does not fetch photos by url")
            raise GraphFailure(324, "(#324) Requires upload file")
        data = source.read()
        if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
            raise GraphFailure(324, "(#324) Missing or invalid image file")
        if len(data) > MAX_PHOTO_BYTES:
            raise GraphFailure(100, "(#100) The photo is larger than 4 MB")
        published = request.values.get("published", "true").lower() not in ("false", "0")
        message = request.values.get("message")
        photo_id = self._next_id()
        post_id = self._new_post(message, [photo_id]) if published else None
        self.photos[photo_id] = {"bytes": data, "published": published, "message": message,
                                 "post_id": post_id, "created": self._now()}
        return {"id": photo_id, "post_id": post_id} if post_id else {"id": photo_id}

    def _post_feed(self, request: Request) -> dict[str, str]:
        message = request.values.get("message")
        attached = [(key, value) for key, value in request.values.items(multi=True)
                    if key.startswith("attached_media")]
        photo_ids: list[str] = []
        for key, value in sorted(attached, key=lambda item: _index(item[0])):
            try:
                media = json.loads(value)
                photo_id = str(media["media_fbid"])
            except (ValueError, TypeError, KeyError):
                raise GraphFailure(100, f"(#100) param {key} must be a JSON object with media_fbid") from None
            photo = self.photos.get(photo_id)
            if photo is None or photo_id in self.deleted or photo["published"] or photo_id in photo_ids:
                raise GraphFailure(100, f"(#100) param {key} has an invalid value: {photo_id} is not an "
                                   "unpublished photo of this Page")
            photo_ids.append(photo_id)
        if not message and not photo_ids:
            raise GraphFailure(100, "(#100) Missing message or attachment")
        if not photo_ids and any(post["message"] == message and not post["photo_ids"] and not post["video_id"]
                                 for post in self.live_posts().values()):
            raise GraphFailure(506, "Duplicate status message", subcode=1455006)
        post_id = self._new_post(message, photo_ids)
        for photo_id in photo_ids:
            self.photos[photo_id].update(published=True, post_id=post_id)
        return {"id": post_id}

    def _start_upload(self, request: Request, app_id: str) -> dict[str, str]:
        if app_id != self.app_id:
            raise GraphFailure(100, f"(#100) Object with ID '{app_id}' does not exist", subcode=33)
        try:
            length = int(request.values["file_length"])
        except (KeyError, ValueError):
            raise GraphFailure(100, "(#100) The parameter file_length is required") from None
        file_type = request.values.get("file_type", "")
        if file_type not in ("video/mp4", "video/quicktime", "application/pdf", "image/jpeg", "image/png"):
            raise GraphFailure(100, "(#100) file_type must be video/mp4 (or another supported type)")
        if length <= 0:
            raise GraphFailure(100, "(#100) file_length must be positive")
        session = "upload:" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        self.uploads[session] = {"file_name": request.values.get("file_name"), "file_length": length,
                                 "file_type": file_type, "data": bytearray(), "handle": None}
        return {"id": session}

    def _session(self, session: str) -> dict[str, Any]:
        upload = self.uploads.get(session)
        if upload is None:
            raise GraphFailure(100, f"(#100) Upload session {session} does not exist or has expired",
                               subcode=33)
        return upload

    def _upload_status(self, session: str) -> dict[str, Any]:
        upload = self._session(session)
        return {"id": session, "file_offset": len(upload["data"])}

    def _upload_chunk(self, request: Request, session: str) -> dict[str, Any]:
        upload = self._session(session)
        expected = len(upload["data"])
        try:
            offset = int(request.headers.get("file_offset", ""))
        except ValueError:
            raise GraphFailure(100, "(#100) The file_offset header is required") from None
        if offset != expected:
            raise GraphFailure(OFFSET_MISMATCH, f"Invalid file offset {offset}: the upload resumes at "
                               f"{expected}", subcode=1363037, data={"start_offset": expected})
        data = request.get_data()
        if expected + len(data) > upload["file_length"]:
            raise GraphFailure(100, "(#100) More bytes than file_length")
        upload["data"].extend(data)
        if len(upload["data"]) < upload["file_length"]:
            return {"file_offset": len(upload["data"])}
        if upload["handle"] is None:
            upload["handle"] = "4:" + secrets.token_urlsafe(16)
        return {"h": upload["handle"]}

    def _post_videos(self, request: Request) -> dict[str, str]:
        handle = request.values.get("fbuploader_video_file_chunk")
        upload = next((upload for upload in self.uploads.values() if handle and upload["handle"] == handle),
                      None)
        if upload is None:
            raise GraphFailure(100, "(#100) fbuploader_video_file_chunk is not the handle of a complete "
                               "upload")
        if any(video["handle"] == handle for video in self.videos.values()):
            raise GraphFailure(506, "Duplicate video: this upload was already posted", subcode=1363030)
        video_id = self._next_id()
        description = request.values.get("description")
        post_id = self._new_post(description, [], video_id)
        self.videos[video_id] = {"bytes": bytes(upload["data"]), "title": request.values.get("title"),
                                 "description": description, "post_id": post_id, "handle": handle,
                                 "created": self._now()}
        return {"id": video_id}

    def _delete(self, object_id: str) -> dict[str, bool]:
        if object_id in self.deleted:
            raise GraphFailure(100, f"(#100) Object with ID '{object_id}' does not exist", subcode=33)
        if object_id in self.posts:
            post = self.posts[object_id]
            doomed = [object_id, *post["photo_ids"], *([post["video_id"]] if post["video_id"] else [])]
        elif object_id in self.photos or object_id in self.videos:
            item = self.photos.get(object_id) or self.videos[object_id]
            doomed = [object_id, *([item["post_id"]] if item["post_id"] else [])]
        else:
            raise GraphFailure(100, f"(#100) Object with ID '{object_id}' does not exist, cannot be loaded "
                               "due to missing permissions, or does not support this operation", subcode=33)
        self.deleted.extend(item for item in doomed if item not in self.deleted)
        return {"success": True}

    def _get(self, object_id: str) -> dict[str, Any]:
        if object_id not in self.deleted:
            if object_id == self.page_id:
                return {"id": object_id, "name": "Fake School Page"}
            if object_id in self.posts:
                post = self.posts[object_id]
                return {"id": object_id, "message": post["message"],
                        "created_time": post["created"].isoformat()}
            if object_id in self.photos:
                photo = self.photos[object_id]
                return {"id": object_id, "published": photo["published"], "post_id": photo["post_id"]}
            if object_id in self.videos:
                return {"id": object_id, "title": self.videos[object_id]["title"]}
        raise GraphFailure(100, f"(#100) Object with ID '{object_id}' does not exist", subcode=33)

    # --- serving --------------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeGraph:
        """Serve on 127.0.0.1 in a daemon thread; sets `url`."""
        self._server = make_server(HOST, port, self, threaded=True, request_handler=_Handler)
        self.url = f"http://{HOST}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None



def _index(key: str) -> int:
    """The index of `attached_media[i]`."""
    match = re.search(r"\[(\d+)\]", key)
    return int(match.group(1)) if match else 0


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler, but passing the `file_offset` header (werkzeug drops names with `_`)."""

    def make_environ(self) -> dict[str, Any]:
        """The WSGI environ, with HTTP_FILE_OFFSET when the request has `file_offset`."""
        environ = super().make_environ()
        value = self.headers.get("file_offset")
        if value is not None:
            environ["HTTP_FILE_OFFSET"] = value
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet in tests (the request log is `FakeGraph.requests`); never the query (the token)."""
        if getattr(self.server, "verbose", False):
            self.log("info", '"%s %s" %s', self.command, self.path.split("?", 1)[0], code)


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    """A fresh fake Graph API on 127.0.0.1; `.url`, `.settings()` and `.config()` point at it."""
    fake = FakeGraph().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def graph(app: Any, fake_graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> FakeGraph:
    """The fake configured as the app's Facebook Page; the publishing jobs' client never sleeps."""
    from flask import current_app

    from consent_registry.publishing import jobs as publishing_jobs
    from consent_registry.publishing.facebook import GraphClient, GraphSettings

    app.config.update(fake_graph.config())
    monkeypatch.setattr(publishing_jobs, "graph_client", lambda: GraphClient(
        GraphSettings.from_config(current_app.config), sleep=lambda _seconds: None))
    return fake_graph


def main() -> None:
    """Run the fake for development: `python tests/fake_graph.py --port 8089 --token dev-token`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--token", default="dev-token")
    parser.add_argument("--page-id", default=PAGE_ID)
    parser.add_argument("--app-id", default=APP_ID)
    args = parser.parse_args()
    fake = FakeGraph(page_id=args.page_id, app_id=args.app_id, token=args.token)
    server = make_server(HOST, args.port, fake, threaded=True, request_handler=_Handler)
    server.verbose = True  # type: ignore[attr-defined]
    fake.url = f"http://{HOST}:{server.server_port}"
    print(f"Fake Graph API on {fake.url}/v24.0/ — set CONSENT_REGISTRY_FACEBOOK_GRAPH_URL={fake.url} "
          f"_FACEBOOK_PAGE_ID={fake.page_id} _FACEBOOK_APP_ID={fake.app_id} _FACEBOOK_PAGE_TOKEN=<token>",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
