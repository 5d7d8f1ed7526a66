"""Background jobs: the same job code runs inline, embedded on SQLite, or over Redis by another app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, current_app, has_request_context
from huey.exceptions import TaskException

from consent_registry import create_app, jobs
from consent_registry.db import db

from conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # never database 0


# The jobs under test, declared at import time like the application's own.

@jobs.task
def where_am_i() -> tuple[str, str, bool]:
    """What a job sees: the app's settings and database, and no request."""
    database = db.session.get_bind().url.database or ""
    return current_app.config["JOBS_NAME"], database, has_request_context()


@jobs.task()
def write_marker(path: str, text: str = "done") -> str:
    """Leave a file saying which app ran the job."""
    label = current_app.config.get("TEST_LABEL", "?")
    Path(path).write_text(f"{text} by {label}")
    return label


@jobs.task(retries=2, retry_delay=0)
def flaky(path: str, failures: int) -> str:
    """Count attempts in a file; fail the first `failures` of them."""
    attempts = Path(path)
    with attempts.open("a") as handle:
        handle.write("x")
    done = len(attempts.read_text())
    if done <= failures:
        raise RuntimeError(f"attempt {done} fails")
    return f"succeeded on attempt {done}"


@jobs.task()
def slow_marker(folder: str, seconds: float) -> None:
    """Say when it starts, take its time, say when it finishes."""
    (Path(folder) / "started").touch()
    time.sleep(seconds)
    (Path(folder) / "finished").touch()


@jobs.periodic_task(jobs.crontab())  # every minute
def periodic_marker() -> None:
    """Leave a file, in apps that ask for it (other tests' consumers run this too)."""
    if folder := current_app.config.get("TEST_PERIODIC_DIR"):
        (Path(folder) / "periodic").touch()


def _settings(tmp_path: Path, mode: str, **extra: Any) -> tuple[dict[str, Any], dict[str, str]]:
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "UPLOAD_DIR": str(tmp_path / "uploads"),
                "JOBS": mode, **extra}
    environ = {"CONSENT_REGISTRY_ENV": "test",
               "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance")}
    return settings, environ


def make_app(tmp_path: Path, mode: str, **extra: Any) -> Flask:
    """An app in test mode with the given JOBS mode, its queue set up."""
    settings, environ = _settings(tmp_path, mode, **extra)
    app = create_app(settings, environ=environ)
    jobs.init_app(app)
    return app


@pytest.fixture
def embedded() -> Iterator[Callable[..., jobs.EmbeddedWorker]]:
    """start_embedded_worker, with every worker started stopped again after the test."""
    started: list[jobs.EmbeddedWorker] = []

    def start(app: Flask, **options: Any) -> jobs.EmbeddedWorker:
        handle = jobs.start_embedded_worker(app, **options)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop(timeout=10)


def test_immediate_mode_runs_the_job_at_once_in_its_own_app_context(tmp_path: Path) -> None:
    """JOBS=immediate: enqueueing runs the wrapped job synchronously, outside the request."""
    app = make_app(tmp_path, "immediate", JOBS_NAME="inline-queue")
    assert jobs.get_huey(app).immediate
    with app.test_request_context("/"):
        result = where_am_i.enqueue()
        same = jobs.enqueue(where_am_i)
    assert result is not None and same is not None
    assert result.get() == same.get() == ("inline-queue", f"{tmp_path}/t.db", False)
    with app.app_context():
        assert where_am_i() == ("inline-queue", f"{tmp_path}/t.db", False)  # a plain call


def test_init_app_refuses_an_unknown_mode_and_is_idempotent(tmp_path: Path) -> None:
    """A misspelt JOBS fails at start-up; a second init_app keeps the queue it made."""
    with pytest.raises(RuntimeError, match="JOBS must be one of embedded, redis, immediate"):
        make_app(tmp_path / "bad", "celery")
    app = make_app(tmp_path, "immediate")
    assert jobs.init_app(app) is app.extensions["huey"] is jobs.get_huey(app)
    assert {where_am_i.name, flaky.name, periodic_marker.name} <= set(jobs.registered_jobs())


def test_embedded_worker_runs_queued_and_delayed_jobs(
    tmp_path: Path, embedded: Callable[..., jobs.EmbeddedWorker]
) -> None:
    """JOBS=embedded: jobs wait in SQLite until a consumer thread in this process runs them."""
    app = make_app(tmp_path, "embedded", TEST_LABEL="embedded")
    huey = jobs.get_huey(app)
    assert huey.storage.filename == str(tmp_path / "instance" / "jobs.sqlite3")
    now, later = tmp_path / "now", tmp_path / "later"
    with app.app_context():
        write_marker.enqueue(str(now))
        jobs.enqueue_in(1, write_marker, str(later), text="later")
    assert huey.pending_count() == 2 and not now.exists()  # the worker holds back the later one

    handle = embedded(app, periodic=False)
    assert jobs.start_embedded_worker(app) is handle  # once per process
    assert wait_for(now.exists) and now.read_text() == "done by embedded"
    assert wait_for(later.exists) and later.read_text() == "later by embedded"
    assert handle.stop(timeout=10) and not handle.running
    assert (huey.pending_count(), huey.scheduled_count()) == (0, 0)


@pytest.fixture
def redis_queue_name() -> Iterator[str]:
    """A queue name of this test's own on Redis database 13; its keys are removed afterwards."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("no Redis server on 127.0.0.1:6379: the machine (and CI) runs one")
    name = f"crtest_{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        keys = list(client.scan_iter(match=f"huey.*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_redis_job_enqueued_by_one_app_runs_in_another(
    tmp_path: Path, redis_queue_name: str, embedded: Callable[..., jobs.EmbeddedWorker]
) -> None:
    """JOBS=redis: the web app enqueues, a worker app built from the same config runs it."""
    settings = {"JOBS_NAME": redis_queue_name, "REDIS_URL": REDIS_TEST_URL}
    web = make_app(tmp_path, "redis", TEST_LABEL="web", **settings)
    worker = make_app(tmp_path, "redis", TEST_LABEL="worker", **settings)
    marker = tmp_path / "marker"
    with web.test_request_context("/"):
        result = write_marker.enqueue(str(marker))
    assert result is not None
    assert jobs.get_huey(web).pending_count() == 1 and not marker.exists()

    embedded(worker, periodic=False)
    assert result.get(blocking=True, timeout=10) == "worker"  # the result travels back too
    assert marker.read_text() == "done by worker"
    assert jobs.get_huey(web).pending_count() == 0


def test_a_failing_job_is_retried_by_the_worker(
    tmp_path: Path, embedded: Callable[..., jobs.EmbeddedWorker]
) -> None:
    """retries=2, retry_delay=0: failing twice, then succeeding, makes three runs."""
    app = make_app(tmp_path, "embedded")
    huey = jobs.get_huey(app)
    attempts = tmp_path / "attempts"
    with app.app_context():
        result = flaky.enqueue(str(attempts), failures=2)
    assert result is not None
    embedded(app, periodic=False)
    wait_for(lambda: huey.get(result.id, peek=True) == "succeeded on attempt 3")
    assert attempts.read_text() == "xxx"


def test_retries_are_bounded(tmp_path: Path) -> None:
    """A job that always fails runs 1 + retries times, then reports its error."""
    app = make_app(tmp_path, "immediate")
    attempts = tmp_path / "attempts"
    with app.app_context():
        result = jobs.enqueue(flaky, str(attempts), failures=99)
    assert result is not None
    assert attempts.read_text() == "xxx"
    with pytest.raises(TaskException, match="attempt 3 fails"):
        result.get()


def test_periodic_tasks_are_registered_and_run_by_the_consumer(
    tmp_path: Path, embedded: Callable[..., jobs.EmbeddedWorker]
) -> None:
    """The consumer's scheduler knows the periodic task and enqueues it when it is due."""
    app = make_app(tmp_path, "embedded", TEST_PERIODIC_DIR=str(tmp_path))
    due = jobs.get_huey(app).read_periodic(datetime.now(UTC).replace(tzinfo=None))
    assert periodic_marker.name in {f"{type(t).__module__}.{type(t).__name__}" for t in due}
    embedded(app)  # every-minute tasks are due when the scheduler first looks
    wait_for((tmp_path / "periodic").exists)


def test_crontab_can_follow_the_school_clock() -> None:
    """Huey passes naive UTC moments; tz= reads them on the local clock, summer time included."""
    eight = jobs.crontab(hour="8", minute="0", tz="Europe/Amsterdam")
    assert eight(datetime(2026, 1, 15, 7, 0)) and eight(datetime(2026, 7, 15, 6, 0))
    assert not eight(datetime(2026, 1, 15, 8, 0))
    assert jobs.crontab(hour="8", minute="0")(datetime(2026, 1, 15, 8, 0))  # plain: UTC


def test_worker_command_is_a_flask_command(tmp_path: Path) -> None:
    """`flask worker --help` documents its options; in immediate mode there is nothing to run."""
    app = make_app(tmp_path, "immediate")
    app.cli.add_command(jobs.worker_command)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["worker", "--help"])
    assert result.exit_code == 0, result.output
    assert "--workers" in result.output and "--no-periodic" in result.output
    result = runner.invoke(args=["worker", "--workers", "1"])
    assert result.exit_code == 1 and "immediate" in result.output


WORKER_SCRIPT = """\
import importlib, sys
sys.path[:0] = {paths!r}
importlib.import_module({module!r})  # the jobs, as the web app knows them
from consent_registry import create_app, jobs
jobs.run_worker(create_app({settings!r}, environ={environ!r}), workers=1, periodic=False)
"""


def _worker_process(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A separate worker process on the embedded queue in tmp_path, as `flask worker` runs."""
    settings, environ = _settings(tmp_path, "embedded")
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT.format(paths=[str(ROOT), str(ROOT / "tests")], module=__name__,
                                           settings=settings, environ=environ))
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path)


def test_worker_process_finishes_its_running_job_on_sigterm(tmp_path: Path) -> None:
    """run_worker stops gracefully on SIGTERM: the running job completes, then the process exits."""
    app = make_app(tmp_path, "embedded")
    with app.app_context():
        slow_marker.enqueue(str(tmp_path), 0.5)
    process = _worker_process(tmp_path)
    try:
        wait_for((tmp_path / "started").exists)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "worker.log").read_text()
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / "finished").exists()


def test_a_killed_worker_loses_its_running_job_and_leaves_nothing_stuck(
    tmp_path: Path, embedded: Callable[..., jobs.EmbeddedWorker]
) -> None:
    """Huey delivers at most once: SIGKILL mid-job drops that job, which a sweeper re-enqueues."""
    app = make_app(tmp_path, "embedded")
    huey = jobs.get_huey(app)
    with app.app_context():
        slow_marker.enqueue(str(tmp_path), 30)
    process = _worker_process(tmp_path)
    try:
        wait_for((tmp_path / "started").exists)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        process.wait()
    assert not (tmp_path / "finished").exists()
    assert (huey.pending_count(), huey.scheduled_count()) == (0, 0)  # gone, not stuck

    with app.app_context():  # what the domain's sweeper does for unfinished work
        slow_marker.enqueue(str(tmp_path), 0)
    embedded(app, periodic=False)
    wait_for((tmp_path / "finished").exists)
