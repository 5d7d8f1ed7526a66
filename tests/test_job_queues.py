"""Urgent work has its own queue and workers: mail goes out while every analysis worker is busy."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from test_publishing import tagged_photo

from consent_registry import jobs
from consent_registry.audit import SYSTEM
from consent_registry.consent.sending import send_mail
from consent_registry.db import db
from consent_registry.media.analysis import analyse_media, listen_to_sound
from consent_registry.media.models import Media
from consent_registry.publishing import jobs as publishing_jobs
from consent_registry.publishing.service import request_publication

from conftest import make_app, wait_for
from smtp_server import SMTPTestServer

REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # never database 0; each test has its own queue name

# The analysis workers' jobs block on this until the test lets them go; `started` counts them in.
release = threading.Event()
started: list[str] = []
started_lock = threading.Lock()


@jobs.task(queue="analysis")
def long_analysis(label: str) -> None:
    """Stands for a video analysis: holds its worker until the test releases it."""
    with started_lock:
        started.append(label)
    release.wait(timeout=120)  # a bound only so a failing test cannot hang the suite


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    """Every test starts with blocked analysis workers, and frees them when it ends."""
    release.clear()
    started.clear()
    yield
    release.set()


@pytest.fixture
def workers() -> Iterator[list[jobs.EmbeddedWorker]]:
    """Embedded workers a test started; each is stopped afterwards, even when the test fails."""
    running: list[jobs.EmbeddedWorker] = []
    yield running
    release.set()
    for handle in running:
        handle.stop(timeout=30)


def _mail(to: str) -> dict[str, Any]:
    return {"to": to, "subject": "Consent", "text": "Please answer.", "html": "<p>Please answer.</p>",
            "language": "en", "headers": {}}


def _mail_waits_for_no_analysis(web: Flask, worker: Flask, server: SMTPTestServer,
                                workers: list[jobs.EmbeddedWorker]) -> None:
    """Fill every analysis worker with a job that does not end, then queue a consent mail."""
    threads = worker.config["JOBS_ANALYSIS_WORKERS"]
    with web.app_context():
        for i in range(threads + 1):  # one more than there are workers: a backlog, too
            long_analysis.enqueue(f"video {i}")
    workers.append(jobs.start_embedded_worker(worker, periodic=False))
    wait_for(lambda: len(started) == threads, timeout=30)
    with web.app_context():
        send_mail.enqueue(mail_fields=_mail("anna@ouders.example"), action="test:mail",
                          subject_type="person", subject_id=1)
    server.wait_for_messages(1, timeout=30)
    # Sent while all analysis workers still hold their jobs and one more waits behind them.
    assert not release.is_set() and len(started) == threads
    assert jobs.get_huey(web, "analysis").pending_count() == 1
    assert [m["To"] for m in server.messages] == ["anna@ouders.example"]
    release.set()
    wait_for(lambda: len(started) == threads + 1, timeout=30)


def test_jobs_go_to_their_own_queue() -> None:
    """Analysis is on the analysis queue; mail, takedowns, publishing and exports are urgent."""
    from consent_registry.dpo.export import build_subject_export
    from consent_registry.publishing.jobs import publish_job
    from consent_registry.publishing.takedown import takedown_job

    assert analyse_media.queue == listen_to_sound.queue == "analysis"
    assert {job.queue for job in (send_mail, takedown_job, publish_job, build_subject_export)} == {"urgent"}
    with pytest.raises(ValueError, match="queue must be one of urgent, analysis"):
        jobs.task(queue="slow")(lambda: None)


def test_embedded_mail_is_sent_while_every_analysis_worker_is_busy(
    app: Flask, database_url: str, tmp_path: Path, smtp: SMTPTestServer,
    workers: list[jobs.EmbeddedWorker],
) -> None:
    """JOBS=embedded, as `make run` consumes it: both queues in one SQLite file, each its threads."""
    web = make_app(database_url, tmp_path, JOBS="embedded", JOBS_WORKERS=1, JOBS_ANALYSIS_WORKERS=2,
                   **smtp.settings())
    _mail_waits_for_no_analysis(web, web, smtp, workers)


def test_redis_mail_is_sent_while_every_analysis_worker_is_busy(
    app: Flask, database_url: str, tmp_path: Path, smtp: SMTPTestServer,
    workers: list[jobs.EmbeddedWorker],
) -> None:
    """JOBS=redis: a web app queues in Redis (a queue name of this test's own), a worker consumes."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    name = f"crtest_queues_{uuid.uuid4().hex}"
    settings = {"JOBS": "redis", "REDIS_URL": REDIS_TEST_URL, "JOBS_NAME": name, "JOBS_WORKERS": 1,
                "JOBS_ANALYSIS_WORKERS": 1, **smtp.settings()}
    try:
        web = make_app(database_url, tmp_path, **settings)
        worker = make_app(database_url, tmp_path / "worker", **settings)
        _mail_waits_for_no_analysis(web, worker, smtp, workers)
    finally:
        keys = list(client.scan_iter(match=f"huey.*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_the_worker_command_consumes_the_queues_asked_for(tmp_path: Path) -> None:
    """`flask worker --queues` takes urgent, analysis or both (the default); others are refused."""
    assert jobs.parse_queues(None) == jobs.parse_queues("analysis, urgent") == ("urgent", "analysis")
    assert jobs.parse_queues("analysis") == ("analysis",)
    with pytest.raises(ValueError, match="unknown queue mail"):
        jobs.parse_queues("urgent,mail")
    application = make_app(f"sqlite:///{tmp_path}/t.db", tmp_path, JOBS="immediate")
    result = application.test_cli_runner().invoke(args=["worker", "--queues", "mail"])
    assert result.exit_code == 2 and "unknown queue mail" in result.output


def test_a_video_publication_is_queued_beside_analysis_and_a_photo_on_urgent(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A video's publication re-encodes its blurred rendition (minutes): it goes on the analysis
    queue, so takedowns and consent mail never wait behind it; a photo's stays urgent."""
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(publishing_jobs, "enqueue", lambda job, *args: queued.append((job.queue, *args)))
    monkeypatch.setattr(publishing_jobs, "enqueue_in",
                        lambda delay, job, *args: queued.append((job.queue, *args)))
    media, _person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption="Hi", attested=True,
                                      actor=SYSTEM)
    db.session.commit()
    publishing_jobs.queue_publication(publication.id)
    db.session.execute(sa.update(Media).where(Media.id == media.id).values(kind="video"))
    publishing_jobs.queue_publication(publication.id)
    publishing_jobs.queue_publication(publication.id, delay=30)  # a retry goes the same way
    assert queued == [("urgent", publication.id), ("analysis", publication.id),
                      ("analysis", publication.id)]
    assert publishing_jobs.publish_video_job.queue == "analysis"
