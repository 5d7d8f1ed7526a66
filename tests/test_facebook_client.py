"""The Graph API client against the fake Graph server on 127.0.0.1 (never Facebook)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from consent_registry.config import BaseConfig
from consent_registry.publishing.facebook import (
    AuthGraphError,
    GraphClient,
    GraphSettings,
    PermissionGraphError,
    RateLimitedGraphError,
    RejectedGraphError,
    TransientGraphError,
    usage_of,
)

from fake_graph import FakeGraph

CHUNK = 64 * 1024


def jpeg(seed: int = 0) -> bytes:
    """A small JPEG, different per seed."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 256, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def mp4(path: Path) -> Path:
    """A small real MP4 (noise, H.264) made with PyAV, a few hundred kB."""
    import av
    import numpy as np

    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for _frame in range(20):
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class Recorder:
    """An injected `sleep` that only records, and a `save` that keeps deep copies of `remote`."""

    def __init__(self) -> None:
        """Nothing recorded yet."""
        self.delays: list[float] = []
        self.saved: list[dict] = []

    def sleep(self, seconds: float) -> None:
        """Record a delay instead of sleeping."""
        self.delays.append(seconds)

    def save(self, remote: dict) -> None:
        """Keep what would be committed."""
        self.saved.append(copy.deepcopy(remote))


@pytest.fixture
def rec() -> Recorder:
    """A fresh recorder."""
    return Recorder()


def client_for(fake: FakeGraph, rec: Recorder, **kwargs: Any) -> GraphClient:
    """A client of the fake that never really sleeps."""
    settings = kwargs.pop("settings", None) or fake.settings()
    return GraphClient(settings, sleep=rec.sleep, **{"timeout": 5, "chunk_size": CHUNK, **kwargs})


def posts_to(fake: FakeGraph, suffix: str) -> int:
    """How many POSTs reached a path ending in `suffix`."""
    return sum(1 for method, path in fake.requests if method == "POST" and path.endswith(suffix))


# --- settings -------------------------------------------------------------------------------------


def test_settings_from_config_use_the_defaults_and_hide_the_token() -> None:
    config = {name: getattr(BaseConfig, name) for name in dir(BaseConfig) if name.isupper()}
    with pytest.raises(AuthGraphError, match="FACEBOOK_PAGE_ID"):
        GraphSettings.from_config(config)
    settings = GraphSettings.from_config({**config, "FACEBOOK_PAGE_ID": "42",
                                          "FACEBOOK_PAGE_TOKEN": "s3cret"})
    assert settings.base_url == "https://graph.facebook.com/v24.0/"
    assert (settings.page_id, settings.app_id) == ("42", "")
    assert "s3cret" not in repr(settings)


# --- publishing -----------------------------------------------------------------------------------


def test_a_photo_is_posted_with_its_caption(fake_graph: FakeGraph, rec: Recorder,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data = jpeg()
    answer = client_for(fake_graph, rec).publish_photo(data, caption="Sports day")
    photo = fake_graph.photos[answer["id"]]
    assert photo["bytes"] == data and photo["published"]
    assert answer["post_id"] == photo["post_id"] and answer["post_id"].startswith(fake_graph.page_id + "_")
    assert fake_graph.posts[answer["post_id"]]["message"] == "Sports day"
    assert fake_graph.requests == [("POST", f"/v24.0/{fake_graph.page_id}/photos")]
    assert fake_graph.token not in caplog.text


def test_a_photo_with_remote_is_not_posted_twice(fake_graph: FakeGraph, rec: Recorder) -> None:
    remote: dict = {}
    client = client_for(fake_graph, rec)
    first = client.publish_photo(jpeg(), caption="x", remote=remote, save=rec.save)
    again = client.publish_photo(jpeg(), caption="x", remote=remote, save=rec.save)
    assert first == again == {"id": remote["photo_id"], "post_id": remote["post_id"]}
    assert len(fake_graph.posts) == 1 and posts_to(fake_graph, "/photos") == 1


def test_an_unpublished_photo_is_not_in_the_feed(fake_graph: FakeGraph, rec: Recorder) -> None:
    answer = client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, published=False)
    assert set(answer) == {"id"}
    assert not fake_graph.photos[answer["id"]]["published"]
    assert fake_graph.posts == {}


def test_an_album_is_one_post_of_unpublished_photos(fake_graph: FakeGraph, rec: Recorder) -> None:
    photos = [jpeg(i) for i in range(3)]
    remote: dict = {}
    post_id = client_for(fake_graph, rec).publish_album(photos, caption="Trip", remote=remote, save=rec.save)
    post = fake_graph.posts[post_id]
    assert post["message"] == "Trip" and len(fake_graph.posts) == 1
    assert [fake_graph.photos[photo_id]["bytes"] for photo_id in post["photo_ids"]] == photos
    assert all(fake_graph.photos[photo_id]["post_id"] == post_id for photo_id in post["photo_ids"])
    assert remote == {"photo_ids": post["photo_ids"], "post_id": post_id}
    # Each answer was saved as soon as it came: one, two, three photos, the attempt, the post.
    assert [len(saved.get("photo_ids", [])) for saved in rec.saved] == [1, 2, 3, 3, 3]
    assert rec.saved[3].get("feed_attempted") is True and "post_id" not in rec.saved[3]


def test_a_retried_album_never_uploads_or_posts_twice(fake_graph: FakeGraph, rec: Recorder) -> None:
    photos = [jpeg(i) for i in range(3)]
    remote: dict = {}
    fake_graph.fail_next(r"/feed$", code=2, times=4)
    with pytest.raises(TransientGraphError) as failed:
        client_for(fake_graph, rec).publish_album(photos, caption="Trip", remote=remote, save=rec.save)
    assert not failed.value.uncertain and rec.delays == [2.0, 4.0, 8.0]
    assert "feed_attempted" not in remote and fake_graph.posts == {}
    # The job tries again later with what was saved: the photos are not uploaded again.
    stored = copy.deepcopy(rec.saved[-1])
    post_id = client_for(fake_graph, rec).publish_album(photos, caption="Trip", remote=stored, save=rec.save)
    assert list(fake_graph.posts) == [post_id]
    assert posts_to(fake_graph, "/photos") == 3 and len(fake_graph.photos) == 3
    # And once more: the recorded post id is the answer, nothing is sent.
    sent = len(fake_graph.requests)
    assert client_for(fake_graph, rec).publish_album(photos, caption="Trip", remote=stored,
                                                     save=rec.save) == post_id
    assert len(fake_graph.requests) == sent


def test_an_album_resumes_after_a_failed_photo_upload(fake_graph: FakeGraph, rec: Recorder) -> None:
    photos = [jpeg(i) for i in range(3)]
    remote: dict = {}
    fake_graph.fail_next(r"/photos$", code=368, skip=1)
    with pytest.raises(RejectedGraphError, match="368"):
        client_for(fake_graph, rec).publish_album(photos, caption=None, remote=remote, save=rec.save)
    assert len(remote["photo_ids"]) == 1
    post_id = client_for(fake_graph, rec).publish_album(photos, caption=None, remote=remote, save=rec.save)
    assert posts_to(fake_graph, "/photos") == 4  # one, the refused one, then two
    assert [fake_graph.photos[i]["bytes"] for i in fake_graph.posts[post_id]["photo_ids"]] == photos


def test_a_video_goes_through_the_resumable_upload(fake_graph: FakeGraph, rec: Recorder,
                                                   tmp_path: Path) -> None:
    path = mp4(tmp_path / "clip.mp4")
    data = path.read_bytes()
    assert len(data) > 2 * CHUNK
    remote: dict = {}
    video_id = client_for(fake_graph, rec).publish_video(str(path), title="Concert", description="Spring",
                                                         remote=remote, save=rec.save)
    video = fake_graph.videos[video_id]
    assert video["bytes"] == data and (video["title"], video["description"]) == ("Concert", "Spring")
    assert fake_graph.posts[video["post_id"]]["video_id"] == video_id
    session = remote["upload_session"]
    assert session.startswith("upload:") and fake_graph.uploads[session]["file_length"] == len(data)
    assert fake_graph.uploads[session]["file_name"] == "clip.mp4"
    assert posts_to(fake_graph, "/uploads") == 1
    assert posts_to(fake_graph, session) == -(-len(data) // CHUNK)
    assert remote["video_id"] == video_id and remote["offset"] == len(data) and remote["handle"]


def test_an_interrupted_video_upload_resumes_where_the_server_stands(
        fake_graph: FakeGraph, rec: Recorder, tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 1200)  # ~300 kB: five chunks (the fake does not parse video)
    data = path.read_bytes()

    class Crash(Exception):
        pass

    def save_then_crash(remote: dict) -> None:
        """Commit, until the third chunk is in: the worker dies before that is committed."""
        if remote.get("offset", 0) >= 3 * CHUNK:
            raise Crash
        rec.save(remote)

    with pytest.raises(Crash):
        client_for(fake_graph, rec).publish_video(str(path), title="t", description=None, remote={},
                                                  save=save_then_crash)
    stored = copy.deepcopy(rec.saved[-1])
    assert stored["offset"] == 2 * CHUNK  # the server already has three chunks
    video_id = client_for(fake_graph, rec).publish_video(str(path), title="t", description=None,
                                                         remote=stored, save=rec.save)
    assert fake_graph.videos[video_id]["bytes"] == data
    assert posts_to(fake_graph, "/uploads") == 1  # the same session, resumed
    assert ("GET", f"/v24.0/{stored['upload_session']}") in fake_graph.requests
    assert posts_to(fake_graph, stored["upload_session"]) == 5


def test_a_chunk_whose_answer_was_lost_is_not_sent_twice(fake_graph: FakeGraph, rec: Recorder,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x01" * (2 * CHUNK))
    fake_graph.delay_next(r"/upload:", 1.0, method="POST", skip=1)  # the 2nd chunk arrives, its answer not
    video_id = client_for(fake_graph, rec, timeout=0.4).publish_video(
        str(path), title=None, description=None, remote={}, save=rec.save)
    assert fake_graph.videos[video_id]["bytes"] == path.read_bytes()
    assert rec.delays == [2.0]


def test_a_wrong_offset_is_corrected_from_the_server(fake_graph: FakeGraph, rec: Recorder,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"v" * (3 * CHUNK))
    client = client_for(fake_graph, rec)
    remote: dict = {}
    saves: list[dict] = []

    def stop_after_two(saved: dict) -> None:
        saves.append(copy.deepcopy(saved))
        if saved.get("offset") == 2 * CHUNK:
            raise KeyError("stop")

    with pytest.raises(KeyError):
        client.publish_video(str(path), title=None, description=None, remote=remote, save=stop_after_two)
    # A stale record says offset 0 for a session the server has two chunks of.
    stale = {**saves[0], "offset": 0}
    assert client.publish_video(str(path), title=None, description=None, remote=stale, save=rec.save)
    assert fake_graph.videos[stale["video_id"]]["bytes"] == path.read_bytes()


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "http_status"), [(1, 500), (2, 503), (None, 500), (1, 400)])
def test_transient_errors_are_retried_with_backoff(fake_graph: FakeGraph, rec: Recorder,
                                                   code: int | None, http_status: int) -> None:
    fake_graph.fail_next(r"/photos$", code=code, http_status=http_status, times=2)
    answer = client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, published=False)
    assert answer["id"] in fake_graph.photos and len(fake_graph.photos) == 1
    assert rec.delays == [2.0, 4.0] and posts_to(fake_graph, "/photos") == 3


def test_transient_errors_give_up_after_the_attempts(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.fail_next(r"/photos$", code=1, times=10)
    with pytest.raises(TransientGraphError, match="temporarily unavailable") as failed:
        client_for(fake_graph, rec, attempts=3).publish_photo(jpeg(), caption=None, published=False)
    assert not isinstance(failed.value, RateLimitedGraphError)
    assert (failed.value.code, failed.value.status, failed.value.uncertain) == (1, 500, False)
    assert failed.value.fbtrace_id and rec.delays == [2.0, 4.0]


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_server_is_transient_and_certain(rec: Recorder) -> None:
    settings = GraphSettings(closed_port_url(), "v24.0", "1", "tok", "2")
    with pytest.raises(TransientGraphError, match="could not be reached") as failed:
        GraphClient(settings, sleep=rec.sleep, timeout=2).publish_album(
            [jpeg()], caption=None, remote={}, save=rec.save)
    assert not failed.value.uncertain and rec.delays == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("code", [4, 17, 32, 80001])
def test_rate_limits_back_off_longer(fake_graph: FakeGraph, rec: Recorder, code: int) -> None:
    fake_graph.fail_next(r"/photos$", code=code)
    client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, published=False)
    assert rec.delays == [30.0]
    fake_graph.fail_next(r"/photos$", code=code, times=4)
    with pytest.raises(RateLimitedGraphError, match="rate limit") as failed:
        client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, published=False)
    assert failed.value.code == code and failed.value.retry_after == 240.0
    assert rec.delays == [30.0, 30.0, 60.0, 120.0]


def test_a_usage_header_at_95_percent_pauses_before_the_next_call(fake_graph: FakeGraph,
                                                                  rec: Recorder) -> None:
    fake_graph.usage = 96
    remote: dict = {}
    post_id = client_for(fake_graph, rec).publish_album([jpeg(1), jpeg(2)], caption="x", remote=remote,
                                                        save=rec.save)
    assert post_id in fake_graph.posts
    assert rec.delays == [30.0, 30.0]  # before the second upload and before /feed; nothing failed


def test_a_long_regain_time_stops_the_call_without_losing_work(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.business_usage, fake_graph.regain_minutes = 97, 10
    remote: dict = {}
    with pytest.raises(RateLimitedGraphError) as failed:
        client_for(fake_graph, rec).publish_album([jpeg(1), jpeg(2)], caption="x", remote=remote,
                                                  save=rec.save)
    assert failed.value.retry_after == 600.0 and rec.delays == []
    assert len(remote["photo_ids"]) == 1 and posts_to(fake_graph, "/photos") == 1
    fake_graph.business_usage = None
    post_id = client_for(fake_graph, rec).publish_album([jpeg(1), jpeg(2)], caption="x", remote=remote,
                                                        save=rec.save)
    assert len(fake_graph.posts[post_id]["photo_ids"]) == 2 and posts_to(fake_graph, "/photos") == 2


def test_a_transient_error_at_95_percent_usage_is_a_rate_limit(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.usage = 99
    fake_graph.fail_next(r"/photos$", code=2, times=4)
    with pytest.raises(RateLimitedGraphError):
        client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, published=False)


def test_usage_headers_are_read() -> None:
    assert usage_of({"X-App-Usage": '{"call_count": 12, "total_cputime": 96, "total_time": 3}'}) == (96, None)
    business = {"1": [{"type": "pages", "call_count": 99, "estimated_time_to_regain_access": 2}]}
    assert usage_of({"X-Business-Use-Case-Usage": json.dumps(business)}) == (99, 120.0)
    assert usage_of({"X-App-Usage": "not json"}) == (0, None)


def test_an_invalid_token_stops_at_once_with_a_message_for_the_admin(
        fake_graph: FakeGraph, rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(fake_graph, rec, settings=fake_graph.settings(page_token="expired-token-xyz"))
    with pytest.raises(AuthGraphError) as failed:
        client.publish_album([jpeg()], caption=None, remote={}, save=rec.save)
    assert failed.value.code == 190 and rec.delays == [] and len(fake_graph.requests) == 1
    assert "renew it" in str(failed.value) and "expired-token-xyz" not in str(failed.value)
    assert "expired-token-xyz" not in caplog.text
    with pytest.raises(AuthGraphError):
        client.delete("123")


def test_a_token_without_pages_manage_posts_stops_with_a_message(fake_graph: FakeGraph,
                                                                 rec: Recorder) -> None:
    fake_graph.add_token("read-only", {"pages_read_engagement"})
    client = client_for(fake_graph, rec, settings=fake_graph.settings(page_token="read-only"))
    with pytest.raises(PermissionGraphError, match="pages_manage_posts") as failed:
        client.publish_photo(jpeg(), caption=None)
    assert failed.value.code == 200 and rec.delays == [] and fake_graph.photos == {}


def test_code_10_is_a_missing_permission(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.fail_next(r"/feed$", code=10)
    remote: dict = {}
    with pytest.raises(PermissionGraphError):
        client_for(fake_graph, rec).publish_album([jpeg()], caption=None, remote=remote, save=rec.save)
    assert rec.delays == [] and "feed_attempted" not in remote


@pytest.mark.parametrize(("code", "words"), [(506, "duplicate"), (368, "policies"), (100, "refused")])
def test_refusals_are_not_retried(fake_graph: FakeGraph, rec: Recorder, code: int, words: str) -> None:
    fake_graph.fail_next(r"/feed$", code=code)
    remote: dict = {}
    with pytest.raises(RejectedGraphError, match=words) as failed:
        client_for(fake_graph, rec).publish_album([jpeg()], caption=None, remote=remote, save=rec.save)
    assert failed.value.code == code and rec.delays == [] and posts_to(fake_graph, "/feed") == 1
    assert "feed_attempted" not in remote and fake_graph.posts == {}


def test_a_timeout_on_the_final_step_is_uncertain_and_never_resent(fake_graph: FakeGraph,
                                                                   rec: Recorder) -> None:
    fake_graph.delay_next(r"/feed$", 1.0)  # Facebook posts, but the answer comes too late
    remote: dict = {}
    client = client_for(fake_graph, rec, timeout=0.3)
    with pytest.raises(TransientGraphError, match="may exist") as failed:
        client.publish_album([jpeg()], caption="x", remote=remote, save=rec.save)
    assert failed.value.uncertain and rec.delays == []
    assert len(fake_graph.posts) == 1 and remote["feed_attempted"] is True and "post_id" not in remote
    assert rec.saved[-1] == remote
    sent = len(fake_graph.requests)
    with pytest.raises(TransientGraphError) as again:
        client_for(fake_graph, rec).publish_album([jpeg()], caption="x", remote=remote, save=rec.save)
    assert again.value.uncertain and len(fake_graph.requests) == sent and len(fake_graph.posts) == 1


def test_a_gateway_error_on_the_final_step_is_uncertain(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.fail_next(r"/photos$", code=None, http_status=504)
    remote: dict = {}
    with pytest.raises(TransientGraphError) as failed:
        client_for(fake_graph, rec).publish_photo(jpeg(), caption=None, remote=remote, save=rec.save)
    assert failed.value.uncertain and failed.value.status == 504 and rec.delays == []
    assert remote == {"photo_attempted": True}


def test_a_timeout_posting_the_video_is_uncertain(fake_graph: FakeGraph, rec: Recorder,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"m" * 1000)
    fake_graph.delay_next(r"/videos$", 1.0)
    remote: dict = {}
    with pytest.raises(TransientGraphError) as failed:
        client_for(fake_graph, rec, timeout=0.3).publish_video(str(path), title=None, description=None,
                                                               remote=remote, save=rec.save)
    assert failed.value.uncertain and remote["video_attempted"] and len(fake_graph.videos) == 1
    with pytest.raises(TransientGraphError):
        client_for(fake_graph, rec).publish_video(str(path), title=None, description=None,
                                                  remote=remote, save=rec.save)
    assert posts_to(fake_graph, "/videos") == 1


def test_delete_and_already_gone(fake_graph: FakeGraph, rec: Recorder) -> None:
    client = client_for(fake_graph, rec)
    post_id = client.publish_album([jpeg(1), jpeg(2)], caption="x", remote={}, save=rec.save)
    photo_ids = fake_graph.posts[post_id]["photo_ids"]
    client.delete(post_id)
    assert fake_graph.deleted == [post_id, *photo_ids] and fake_graph.live_posts() == {}
    client.delete(post_id)  # already gone: fine
    client.delete("404404404")  # never existed: fine
    assert ("DELETE", f"/v24.0/{post_id}") in fake_graph.requests and rec.delays == []


def test_delete_retries_transient_errors(fake_graph: FakeGraph, rec: Recorder) -> None:
    client = client_for(fake_graph, rec)
    post_id = client.publish_photo(jpeg(), caption=None)["post_id"]
    fake_graph.fail_next(r"^/v24\.0/\d+_\d+$", code=2, method="DELETE")
    client.delete(post_id)
    assert post_id in fake_graph.deleted and rec.delays == [2.0]


# --- the fake itself ------------------------------------------------------------------------------


def test_the_fake_checks_versions_tokens_pages_and_ids(fake_graph: FakeGraph) -> None:
    url, token, page = fake_graph.url, fake_graph.token, fake_graph.page_id

    def code(response: requests.Response) -> int:
        assert "X-App-Usage" in response.headers
        return response.json()["error"]["code"]

    assert code(requests.get(f"{url}/v99.0/{page}", params={"access_token": token}, timeout=5)) == 100
    assert code(requests.get(f"{url}/v12.0/{page}", params={"access_token": token}, timeout=5)) == 2635
    assert code(requests.get(f"{url}/{page}", params={"access_token": token}, timeout=5)) == 100
    assert code(requests.get(f"{url}/v24.0/{page}", params={"access_token": "nope"}, timeout=5)) == 190
    assert code(requests.get(f"{url}/v24.0/{page}", timeout=5)) == 104
    ok = requests.get(f"{url}/v24.0/{page}", params={"access_token": token}, timeout=5)
    assert ok.json()["id"] == page and json.loads(ok.headers["X-App-Usage"])["call_count"] == 5
    assert code(requests.post(f"{url}/v24.0/999/feed", data={"access_token": token, "message": "m"},
                              timeout=5)) == 100
    gone = requests.delete(f"{url}/v24.0/123", params={"access_token": token}, timeout=5)
    assert gone.status_code == 400 and gone.json()["error"]["code"] == 100


def test_the_fake_feed_wants_unpublished_photos_and_refuses_duplicates(fake_graph: FakeGraph) -> None:
    url, token, page = fake_graph.url, fake_graph.token, fake_graph.page_id
    published = requests.post(f"{url}/v24.0/{page}/photos", data={"access_token": token},
                              files={"source": ("a.jpg", jpeg())}, timeout=5).json()

    def feed(**form: str) -> dict:
        return requests.post(f"{url}/v24.0/{page}/feed", data={"access_token": token, **form},
                             timeout=5).json()

    assert feed(**{"attached_media[0]": json.dumps({"media_fbid": published["id"]})})["error"]["code"] == 100
    assert feed(**{"attached_media[0]": json.dumps({"media_fbid": "777"})})["error"]["code"] == 100
    assert requests.post(f"{url}/v24.0/{page}/photos", data={"access_token": token},
                         files={"source": ("a.txt", b"text")}, timeout=5).json()["error"]["code"] == 324
    assert "id" in feed(message="Hello")
    assert feed(message="Hello")["error"]["code"] == 506


def test_the_fake_upload_checks_offsets_the_oauth_header_and_handles(fake_graph: FakeGraph) -> None:
    url, token = fake_graph.url, fake_graph.token
    session = requests.post(f"{url}/v24.0/{fake_graph.app_id}/uploads", params={
        "file_name": "a.mp4", "file_length": "10", "file_type": "video/mp4", "access_token": token},
        timeout=5).json()["id"]
    oauth = {"Authorization": f"OAuth {token}"}
    assert requests.post(f"{url}/v24.0/{session}", params={"access_token": token}, data=b"x",
                         headers={"file_offset": "0"}, timeout=5).json()["error"]["code"] == 104
    assert requests.post(f"{url}/v24.0/{session}", data=b"01234", timeout=5,
                         headers={**oauth, "file_offset": "0"}).json() == {"file_offset": 5}
    wrong = requests.post(f"{url}/v24.0/{session}", data=b"56789", headers={**oauth, "file_offset": "0"},
                          timeout=5).json()["error"]
    assert wrong["code"] == 1363037 and wrong["error_data"] == {"start_offset": 5}
    assert requests.get(f"{url}/v24.0/{session}", headers=oauth, timeout=5).json()["file_offset"] == 5
    videos = f"{url}/v24.0/{fake_graph.page_id}/videos"
    assert requests.post(videos, data={"access_token": token, "fbuploader_video_file_chunk": "4:nope"},
                         timeout=5).json()["error"]["code"] == 100
    handle = requests.post(f"{url}/v24.0/{session}", data=b"56789", headers={**oauth, "file_offset": "5"},
                           timeout=5).json()["h"]
    video = requests.post(videos, data={"access_token": token, "fbuploader_video_file_chunk": handle},
                          timeout=5).json()
    assert fake_graph.videos[video["id"]]["bytes"] == b"0123456789"


def test_a_refused_connection_on_the_final_step_is_certain_and_retried(fake_graph: FakeGraph,
                                                                       rec: Recorder) -> None:
    remote: dict = {}
    client = client_for(fake_graph, rec)

    def save_and_go_down(saved: dict) -> None:
        rec.save(saved)
        if saved.get("feed_attempted"):  # Facebook is unreachable when the post is sent: it never arrived
            client.settings = dataclasses.replace(client.settings, graph_url=closed_port_url())

    with pytest.raises(TransientGraphError, match="could not be reached") as failed:
        client.publish_album([jpeg()], caption=None, remote=remote, save=save_and_go_down)
    assert not failed.value.uncertain and rec.delays == [2.0, 4.0, 8.0]
    assert "feed_attempted" not in remote and rec.saved[-1] == remote and fake_graph.posts == {}


def test_an_unreadable_answer_to_the_final_step_is_uncertain(fake_graph: FakeGraph, rec: Recorder) -> None:
    fake_graph.fail_next(r"/feed$", code=None, http_status=200)
    remote: dict = {}
    with pytest.raises(TransientGraphError) as failed:
        client_for(fake_graph, rec).publish_album([jpeg()], caption=None, remote=remote, save=rec.save)
    assert failed.value.uncertain and remote["feed_attempted"] and rec.delays == []
