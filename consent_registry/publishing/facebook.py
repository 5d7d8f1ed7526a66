"""A client for the Facebook Graph API (Pages): photos, albums, resumable video uploads, deletes.

Errors are mapped onto a few classes the publishing job can act on:

- `TransientGraphError` (codes 1, 2, `is_transient`, HTTP 5xx, timeouts, connection errors): retried
  inside the call with exponential backoff through the injected `sleep`, up to `attempts` tries,
  then raised for the job to try again later.
- `RateLimitedGraphError` (codes 4, 17, 32, 613, 80000-80014, or an `X-App-Usage` /
  `X-Business-Use-Case-Usage` / `X-Page-Usage` header at 95 % or more): backed off longer;
  `retry_after` (seconds) comes from `estimated_time_to_regain_access` when Facebook gives it. A
  wait longer than `max_inline_wait` is not slept inside the call: the error is raised at once so
  the job can re-queue itself. A *successful* answer with a usage header at 95 % or more is kept
  (the post exists) and the client pauses before its next request instead.
- `AuthGraphError` (190, or the settings are missing) and `PermissionGraphError` (10, 200-299):
  stop; the message tells the admin what to renew or grant.
- `RejectedGraphError` (368 policy, 506 duplicate, any other error): stop, never retried.

A retried publish never posts twice. `publish_album`, `publish_video` (and `publish_photo` when
given `remote`) record every answer in `remote` and hand it to `save(remote)` as soon as they have
it (uploaded photo ids, upload session, offset, handle, post id), and skip those steps when called
again with the same `remote`.

The final step (the `/feed` post, the `/videos` post, a published photo) is special: a POST whose
answer never came (a read timeout, a dropped connection, a gateway 5xx without a Graph error body)
may have succeeded at Facebook. It is not retried: before sending, `remote` records that the step
was attempted (`feed_attempted`, `video_attempted`, `photo_attempted`); when the answer is lost the
client raises `TransientGraphError` with `uncertain=True`, and any later call with that `remote`
raises the same without sending anything. The caller marks the publication for a human to check
the Page, and either records the post id found there or clears the flag to publish again. An
answer that is a Graph error (e.g. code 2) means the post was not made; the flag is cleared and the
step is retried as usual.

The page token is sent as the `access_token` form field (query parameter for GET and DELETE) and as
`Authorization: OAuth <token>` for the upload session; it is never logged and is removed from any
message an error carries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from ..translate import _

log = logging.getLogger(__name__)

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
USAGE_HEADERS = ("X-App-Usage", "X-Business-Use-Case-Usage", "X-Page-Usage", "X-Ad-Account-Usage")
USAGE_KEYS = ("call_count", "total_cputime", "total_time")
USAGE_LIMIT = 95
OFFSET_MISMATCH = 1363037
CHUNK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class GraphSettings:
    """Where and as whom to call the Graph API."""

    graph_url: str
    version: str
    page_id: str
    page_token: str = field(repr=False)
    app_id: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GraphSettings:
        """The settings from the app's FACEBOOK_* configuration; AuthGraphError when incomplete."""
        page_id, token = config.get("FACEBOOK_PAGE_ID"), config.get("FACEBOOK_PAGE_TOKEN")
        if not page_id or not token:
            raise AuthGraphError(_(
                "Facebook is not configured: set CONSENT_REGISTRY_FACEBOOK_PAGE_ID and "
                "CONSENT_REGISTRY_FACEBOOK_PAGE_TOKEN"))
        return cls(
            graph_url=str(config.get("FACEBOOK_GRAPH_URL") or "https://graph.facebook.com").rstrip("/"),
            version=str(config.get("FACEBOOK_GRAPH_VERSION") or "v24.0").strip("/"),
            page_id=str(page_id), page_token=str(token), app_id=str(config.get("FACEBOOK_APP_ID") or ""),
        )

    @property
    def base_url(self) -> str:
        """The versioned base URL, ending in a slash."""
        return f"{self.graph_url.rstrip('/')}/{self.version}/"


class GraphError(Exception):
    """An error from (or on the way to) the Graph API; `message` can be shown to an admin."""

    def __init__(self, message: str, *, code: int | None = None, subcode: int | None = None,
                 status: int | None = None, retry_after: float | None = None,
                 fbtrace_id: str | None = None, uncertain: bool = False,
                 data: Mapping[str, Any] | None = None) -> None:
        """Keep the message and what Facebook said."""
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.status = status
        self.retry_after = retry_after
        self.fbtrace_id = fbtrace_id
        self.uncertain = uncertain
        self.data = dict(data or {})

    def __str__(self) -> str:
        """The admin-facing message."""
        return self.message


class TransientGraphError(GraphError):
    """Codes 1 and 2, HTTP 5xx, timeouts, connection errors: try again later.

    `uncertain` is True when a final publish step may have succeeded although no answer came.
    """


class RateLimitedGraphError(TransientGraphError):
    """Codes 4, 17, 32, 613, 80000-80014 or a usage header at 95 % or more: back off longer."""


class AuthGraphError(GraphError):
    """Code 190 (token invalid or expired) or missing settings: stop and tell the admin."""


class PermissionGraphError(GraphError):
    """Codes 10 and 200-299 (a permission is missing): stop and tell the admin."""


class RejectedGraphError(GraphError):
    """Facebook refused the request (368 policy, 506 duplicate, other errors): do not retry."""


def usage_of(headers: Mapping[str, str]) -> tuple[float, float | None]:
    """The highest usage percentage in the usage headers and the seconds to regain access, if given."""
    highest, regain = 0.0, None
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue
        entries: list[Any] = []
        if isinstance(parsed, dict) and any(key in parsed for key in USAGE_KEYS):
            entries = [parsed]
        elif isinstance(parsed, dict):  # Business use case: {"<id>": [{"type", "call_count", ...}]}
            for value in parsed.values():
                entries.extend(value if isinstance(value, list) else [value])
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for key in USAGE_KEYS:
                value = entry.get(key)
                if isinstance(value, int | float):
                    highest = max(highest, float(value))
            minutes = entry.get("estimated_time_to_regain_access")
            if isinstance(minutes, int | float) and minutes > 0:
                regain = max(regain or 0.0, float(minutes) * 60)
    return highest, regain


def classify(status: int, body: Any, headers: Mapping[str, str], token: str = "") -> GraphError:
    """The error for a failed answer: its class follows the Graph error code, the HTTP status and usage."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None
    said = _redact(str(error.get("message") or ""), token)[:300]
    usage, regain = usage_of(headers)
    extra = {"code": code, "subcode": subcode, "status": status,
             "fbtrace_id": error.get("fbtrace_id"), "data": error.get("error_data")
             if isinstance(error.get("error_data"), dict) else None}
    if code == 190:
        return AuthGraphError(_(
            "The Facebook page token is invalid or expired (190): renew it in the "
            "CONSENT_REGISTRY_FACEBOOK_PAGE_TOKEN setting"), **extra)
    if code is not None and (code == 10 or 200 <= code <= 299):
        return PermissionGraphError(_(
            "The Facebook page token lacks a permission (%(code)s): grant pages_manage_posts and "
            "pages_read_engagement to the app and renew the page token. Facebook said: %(said)s",
            code=code, said=said), **extra)
    transient = (code in TRANSIENT_CODES or error.get("is_transient") is True
                 or (status >= 500 and code not in (368, 506)))
    if code in RATE_LIMIT_CODES or (transient and usage >= USAGE_LIMIT):
        return RateLimitedGraphError(_(
            "Facebook's rate limit is reached (%(code)s): publishing waits and tries again later",
            code=code if code is not None else f"{usage:.0f} %"), retry_after=regain, **extra)
    if transient:
        return TransientGraphError(_(
            "Facebook is temporarily unavailable (%(code)s, HTTP %(status)s): publishing tries "
            "again later", code=code if code is not None else "-", status=status), **extra)
    if code == 368:
        return RejectedGraphError(_(
            "Facebook blocked the post under its policies (368): %(said)s", said=said), **extra)
    if code == 506:
        return RejectedGraphError(_(
            "Facebook refused the post as a duplicate of an earlier one (506)"), **extra)
    return RejectedGraphError(_(
        "Facebook refused the request (%(code)s, HTTP %(status)s): %(said)s",
        code=code if code is not None else "-", status=status, said=said or "-"), **extra)


def _redact(text: str, token: str) -> str:
    """The text without the token."""
    return text.replace(token, "***") if token else text


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly never reached the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text or "NameResolution" in text
    return False


class GraphClient:
    """Publishes to one Facebook Page through the Graph API."""

    def __init__(self, settings: GraphSettings, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, attempts: int = 4, timeout: float = 30,
                 backoff: float = 2.0, rate_backoff: float = 30.0, max_inline_wait: float = 120.0,
                 chunk_size: int = CHUNK_SIZE) -> None:
        """Keep the settings; `sleep` is injected so tests never wait."""
        self.settings = settings
        self.session = session or requests.Session()
        self.sleep = sleep
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self.rate_backoff = rate_backoff
        self.max_inline_wait = max_inline_wait
        self.chunk_size = chunk_size
        self.pause = 0.0  # seconds to wait before the next request (a usage header said 95 %+)

    # --- publishing -------------------------------------------------------------------------

    def _final_step(self, path: str, *, flag: str, remote: dict, save: Callable[[dict], None],
                    **request: Any) -> dict:
        """POST the step that makes a post public, at most once: `remote[flag]` is recorded before
        sending and cleared only when Facebook answered (with a post or a certain error); when the
        answer is lost it stays, and every later call refuses to send again."""
        if remote.get(flag):
            raise self._uncertain_again()
        remote[flag] = True
        save(remote)
        try:
            answer = self._request("POST", path, final=True, **request)
        except GraphError as exc:
            if not exc.uncertain:
                remote.pop(flag, None)
                save(remote)
            raise
        remote.pop(flag, None)
        return answer

    def publish_photo(self, data: bytes, *, caption: str | None, published: bool = True,
                      remote: dict | None = None, save: Callable[[dict], None] | None = None) -> dict:
        """Post one photo (`published=False`: upload it for a later `/feed` post); {"id", "post_id"?}.

        With `remote`/`save`, a published photo is the final step: recorded before sending, never
        sent twice (see the module's documentation)."""
        remote = {} if remote is None else remote
        save = save or (lambda _remote: None)
        if remote.get("photo_id"):
            return {key: value for key, value in
                    (("id", remote["photo_id"]), ("post_id", remote.get("post_id"))) if value}
        form = {"published": "true" if published else "false"}
        if caption:
            form["message"] = caption
        path, files = f"{self.settings.page_id}/photos", {"source": ("photo.jpg", data, _image_type(data))}
        if published:
            answer = self._final_step(path, flag="photo_attempted", remote=remote, save=save,
                                      data=form, files=files)
        else:
            answer = self._request("POST", path, data=form, files=files, final=False)
        remote["photo_id"] = str(answer["id"])
        if answer.get("post_id"):
            remote["post_id"] = str(answer["post_id"])
        save(remote)
        return {key: str(value) for key, value in answer.items() if key in ("id", "post_id")}

    def publish_album(self, photos: Sequence[bytes], *, caption: str | None, remote: dict,
                      save: Callable[[dict], None]) -> str:
        """Post several photos as one Page post: each uploaded unpublished, then `/feed`; the post id."""
        if not photos:
            raise ValueError("an album needs at least one photo")
        if remote.get("post_id"):
            return str(remote["post_id"])
        ids: list[str] = remote.setdefault("photo_ids", [])
        if len(ids) > len(photos):
            raise ValueError("remote records more uploaded photos than the album has")
        for data in photos[len(ids):]:
            answer = self._request("POST", f"{self.settings.page_id}/photos",
                                   data={"published": "false"},
                                   files={"source": ("photo.jpg", data, _image_type(data))})
            ids.append(str(answer["id"]))
            save(remote)
        form = {f"attached_media[{index}]": json.dumps({"media_fbid": photo_id})
                for index, photo_id in enumerate(ids)}
        if caption:
            form["message"] = caption
        answer = self._final_step(f"{self.settings.page_id}/feed", flag="feed_attempted",
                                  remote=remote, save=save, data=form)
        remote["post_id"] = str(answer["id"])
        save(remote)
        return remote["post_id"]

    def publish_video(self, path: str, *, title: str | None, description: str | None, remote: dict,
                      save: Callable[[dict], None]) -> str:
        """Upload a video through the resumable upload (resuming a recorded session) and post it; its id."""
        if remote.get("video_id"):
            return str(remote["video_id"])
        if not self.settings.app_id:
            raise AuthGraphError(_(
                "Facebook video uploads need the app id: set CONSENT_REGISTRY_FACEBOOK_APP_ID"))
        if not remote.get("handle"):
            remote["handle"] = self._upload(path, remote, save)
            save(remote)
        form = {"fbuploader_video_file_chunk": remote["handle"]}
        if title:
            form["title"] = title
        if description:
            form["description"] = description
        answer = self._final_step(f"{self.settings.page_id}/videos", flag="video_attempted",
                                  remote=remote, save=save, data=form)
        remote["video_id"] = str(answer["id"])
        save(remote)
        return remote["video_id"]

    def delete(self, object_id: str) -> None:
        """Delete a post, photo or video; one that is already gone (code 100 / HTTP 404) counts as deleted."""
        try:
            answer = self._request("DELETE", str(object_id))
        except RejectedGraphError as exc:
            if exc.code == 100 or exc.status == 404:
                log.info("Graph object %s was already gone", object_id)
                return
            raise
        if isinstance(answer, dict) and answer.get("success") is False:
            raise RejectedGraphError(_("Facebook did not delete %(id)s", id=object_id))

    # --- the resumable upload -------------------------------------------------------------------

    def _upload(self, path: str, remote: dict, save: Callable[[dict], None]) -> str:
        """Send the file through a resumable upload session, resuming a recorded one; the handle."""
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError("the video file is empty")
        session, offset = remote.get("upload_session"), 0
        if session and remote.get("file_length") == size:
            try:
                offset = self._offset(session)
            except RejectedGraphError:  # the session expired or is unknown: start again
                session = None
        else:
            session = None
        if not session:
            answer = self._request("POST", f"{self.settings.app_id}/uploads", params={
                "file_name": os.path.basename(path), "file_length": str(size), "file_type": "video/mp4"})
            session = str(answer["id"])
            remote.update(upload_session=session, file_length=size, offset=0)
            save(remote)
        failures = 0
        with open(path, "rb") as handle_file:
            while True:
                handle_file.seek(offset)
                chunk = handle_file.read(self.chunk_size)
                try:
                    answer = self._once("POST", session, body=chunk, oauth=True,
                                        headers={"file_offset": str(offset),
                                                 "Content-Type": "application/octet-stream"})
                except GraphError as exc:
                    mismatch = exc.code == OFFSET_MISMATCH or "start_offset" in exc.data
                    if not (isinstance(exc, TransientGraphError) or mismatch):
                        raise
                    failures += 1
                    if failures >= self.attempts:
                        raise
                    if not mismatch:
                        self._backoff(exc, failures - 1)
                    offset = self._offset(session)
                    remote["offset"] = offset
                    save(remote)
                    continue
                if answer.get("h"):
                    remote["offset"] = size
                    return str(answer["h"])
                offset = int(answer.get("file_offset", offset + len(chunk)))
                remote["offset"] = offset
                save(remote)
                if offset >= size:  # all sent but no handle: ask where the session stands
                    offset = self._offset(session)
                    if offset >= size:
                        raise RejectedGraphError(_("Facebook accepted the whole video but gave no handle"))

    def _offset(self, session: str) -> int:
        """The offset the upload session resumes from."""
        answer = self._request("GET", session, oauth=True)
        return int(answer.get("file_offset", 0))

    # --- requests -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, final: bool = False, **kwargs: Any) -> dict:
        """Send a request, retrying transient errors with backoff (never an uncertain final step)."""
        for attempt in range(self.attempts):
            try:
                return self._once(method, path, final=final, **kwargs)
            except TransientGraphError as exc:
                if exc.uncertain or attempt + 1 >= self.attempts:
                    if isinstance(exc, RateLimitedGraphError) and exc.retry_after is None:
                        exc.retry_after = self.rate_backoff * 2 ** attempt
                    raise
                if isinstance(exc, RateLimitedGraphError) and (exc.retry_after or 0) > self.max_inline_wait:
                    raise
                log.warning("Graph %s %s failed (%s); retrying", method, _path_only(path), exc.message)
                self._backoff(exc, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, exc: GraphError, attempt: int) -> None:
        """Sleep before the next try: longer for a rate limit."""
        if isinstance(exc, RateLimitedGraphError):
            self.sleep(exc.retry_after or self.rate_backoff * 2 ** attempt)
        else:
            self.sleep(self.backoff * 2 ** attempt)

    def _once(self, method: str, path: str, *, final: bool = False, oauth: bool = False,
              params: dict | None = None, data: dict | None = None, files: dict | None = None,
              body: bytes | None = None, headers: dict | None = None) -> dict:
        """One request and its answer, or the GraphError it maps to."""
        token = self.settings.page_token
        self._wait_for_usage()
        headers = dict(headers or {})
        params = dict(params or {})
        if oauth:
            headers["Authorization"] = f"OAuth {token}"
        elif method in ("GET", "DELETE") or body is not None:
            params["access_token"] = token
        else:
            data = {**(data or {}), "access_token": token}
        url = self.settings.base_url + path.lstrip("/")
        try:
            response = self.session.request(method, url, params=params or None, data=body if body is not None
                                            else data, files=files, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            uncertain = final and not _never_sent(exc)
            if isinstance(exc, requests.Timeout):
                message = _("Facebook did not answer within %(seconds)s seconds", seconds=self.timeout)
            else:
                message = _("Facebook could not be reached: %(error)s",
                            error=_redact(type(exc).__name__, token))
            if uncertain:
                message = self._uncertain_message()
            log.warning("Graph %s %s: %s", method, _path_only(path), type(exc).__name__)
            raise TransientGraphError(message, uncertain=uncertain) from None
        log.debug("Graph %s %s -> %s", method, _path_only(path), response.status_code)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        usage, regain = usage_of(response.headers)
        if response.ok and usage >= USAGE_LIMIT:
            self.pause = max(self.pause, regain or self.rate_backoff)
        if response.ok and isinstance(answer, dict) and "error" not in answer:
            return answer
        if response.ok and not isinstance(answer, dict):  # a proxy's page, a cut-off answer
            raise TransientGraphError(self._uncertain_message() if final else _(
                "Facebook's answer could not be read (HTTP %(status)s)", status=response.status_code),
                status=response.status_code, uncertain=final)
        error = classify(response.status_code, answer, response.headers, token)
        if usage >= USAGE_LIMIT and isinstance(error, RateLimitedGraphError):
            self.pause = max(self.pause, error.retry_after or self.rate_backoff)
        if final and isinstance(error, TransientGraphError) and error.code is None:
            # A gateway error or an unreadable answer: the post may exist all the same.
            error = TransientGraphError(self._uncertain_message(), status=response.status_code,
                                        uncertain=True)
        raise error

    def _wait_for_usage(self) -> None:
        """Honour a pause a usage header asked for: sleep it, or raise when it is too long."""
        pause, self.pause = self.pause, 0.0
        if pause <= 0:
            return
        if pause > self.max_inline_wait:
            raise RateLimitedGraphError(_(
                "Facebook's rate limit is reached (%(code)s): publishing waits and tries again later",
                code="95 %"), retry_after=pause)
        self.sleep(pause)

    def _uncertain_message(self) -> str:
        """The message of a final step whose answer was lost."""
        return _("Facebook did not answer the final publishing step; the post may exist. Check the "
                 "Facebook Page before publishing again")

    def _uncertain_again(self) -> TransientGraphError:
        """The error for a final step that was attempted before without a known outcome."""
        return TransientGraphError(self._uncertain_message(), uncertain=True)


def _path_only(path: str) -> str:
    """A path for the logs (no query string)."""
    return path.split("?", 1)[0]


def _image_type(data: bytes) -> str:
    """The content type of a photo from its first bytes."""
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
