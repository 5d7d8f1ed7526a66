"""Background jobs on Huey: embedded on SQLite with no extra server, or over Redis, same task code.

Declare jobs at import time, before any app exists, with this module's decorators::

    from consent_registry import jobs

    @jobs.task(retries=3, retry_delay=30)
    def render_variants(media_id: int) -> None:
        ...

    @jobs.periodic_task(jobs.crontab(minute="*/5"))
    def sweep() -> None:
        ...

    @jobs.task(queue="analysis")                # slow work, on its own queue and workers
    def analyse(media_id: int) -> None:
        ...

    render_variants.enqueue(media.id)           # or jobs.enqueue(render_variants, media.id)
    render_variants.enqueue_in(60, media.id)    # or jobs.enqueue_in(60, render_variants, ...)
    render_variants(media.id)                   # a plain call still runs it here and now

Two queues, each its own Huey instance with its own worker threads: `urgent` (the default: mail,
takedowns, publishing, exports, sweepers) and `analysis` (faces and voices, minutes per video).
A busy analysis worker never delays urgent work, which was the point: a consent request once waited
five minutes behind a video. `flask worker --queues urgent,analysis` (the default) runs both, each
with its own threads; the embedded worker always runs both.

The decorators only record the function and its options. `init_app(app)` builds the Huey instances
the app's JOBS setting asks for and registers every recorded job on them, wrapped so that each run
happens inside a fresh `app.app_context()` with its own database session, removed afterwards.
Enqueueing looks up `current_app.extensions["jobs"]` and the job's queue, so web code, commands
and jobs themselves enqueue on their own app's queues. Every job is known to both queues' workers
(a message left on the other queue by an older version still runs); periodic jobs are scheduled
only by their own queue's consumer. Options (retries, retry_delay, priority, expires, ...) are
Huey's own and pass through unchanged.

JOBS selects the queue:
  "embedded"   SqliteHuey on JOBS_SQLITE_PATH (default <instance>/jobs.sqlite3), both queues in
               the one file; consume them with `start_embedded_worker(app)` inside the web
               process, or with `flask worker`.
  "redis"      PriorityRedisHuey on REDIS_URL; run `flask worker` on as many machines as needed
               (e.g. `--queues urgent` on the web machine, `--queues analysis` on a big one).
  "immediate"  MemoryHuey(immediate=True): a job runs synchronously when it is enqueued, through
               the same wrapper (tests). Jobs enqueued with a delay are only stored, never run.
Enqueue after the commit that makes the job's work visible, with ids read *before* that commit:
reading an expired object afterwards opens a new transaction, and on SQLite every transaction
holds the write lock (BEGIN IMMEDIATE), so an inline job would wait for it and fail "locked".
The urgent queue is named JOBS_NAME, the analysis queue JOBS_NAME + "_analysis".
Every app sharing a JOBS_NAME (and database file or Redis) shares its queues; a worker runs a job
by its name, `<module>.<function>`, so workers must import the same job modules as the web app.

What Huey guarantees, and what it does not:
  * An enqueued message is durable in SQLite, and in Redis as far as Redis persists its data.
  * A worker *removes* a message from the queue before running it and never acknowledges it:
    delivery is at most once. A worker killed mid-job (SIGKILL, OOM, power loss) loses that job;
    nothing is left stuck or half-claimed in the queue, but the work is simply not done.
    `flask worker` stops gracefully on SIGTERM (and on SIGINT with huey 2.x): no new jobs are
    taken and running ones finish. The embedded worker does the same at normal interpreter exit.
  * A job that raises is retried `retries` times, `retry_delay` seconds apart; retries and delayed
    jobs wait in the queue's schedule, so they survive restarts. After the last failure the error
    is stored as the job's result and the job is dropped.
  * Periodic tasks are computed from the clock (Huey's crontab reads UTC; this module's
    `crontab(..., tz="Europe/Amsterdam")` reads local time), not stored: a minute in which no
    consumer with periodic tasks runs is skipped, not caught up. Every consumer started with
    periodic tasks enqueues them, so run exactly one such consumer per queue (`--no-periodic` on
    the others), or make the periodic tasks harmless to run twice.
Hence the recovery design: the database, not the queue, is the record of work to do. A job takes
ids (never ORM objects), re-reads the current state, does nothing if the work is already done,
and commits its result together with the "done" mark. A long job claims its row with a lease it
renews while it runs (leases.py); a periodic sweeper re-enqueues work whose lease lapsed (the
worker died) or that waited too long in the queue; running a job twice is harmless.
Do not rely on `huey.lock_task` for this: a worker that dies holding such a lock leaves it set.
Results: a job's return value (unless None) and a finally failed job's error are kept in the queue's
store until someone reads them, so fire-and-forget jobs should return None.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from huey import MemoryHuey, PriorityRedisHuey, SqliteHuey
from huey import crontab as huey_crontab
from huey.api import Huey, Result, TaskWrapper
from huey.consumer import Consumer, ConsumerStopped
from huey.utils import normalize_time

from .db import db

__all__ = [
    "MODES",
    "QUEUES",
    "EmbeddedWorker",
    "Job",
    "crontab",
    "enqueue",
    "enqueue_in",
    "get_huey",
    "init_app",
    "parse_queues",
    "periodic_task",
    "queue_name",
    "registered_jobs",
    "run_worker",
    "start_embedded_worker",
    "task",
    "worker_command",
]

logger = logging.getLogger(__name__)

MODES = ("embedded", "redis", "immediate")
QUEUES = ("urgent", "analysis")  # urgent work first in every listing: it is consumed first
DEFAULT_QUEUE = "urgent"
DEFAULTS: dict[str, Any] = {
    "JOBS": "embedded",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "JOBS_SQLITE_PATH": None,
    "JOBS_NAME": "consent-registry",
    "JOBS_WORKERS": 2,
    "JOBS_ANALYSIS_WORKERS": 2,
}
WORKERS_SETTING = {"urgent": "JOBS_WORKERS", "analysis": "JOBS_ANALYSIS_WORKERS"}
# An idle SQLite worker polls with backoff up to this many seconds (Redis workers block instead).
MAX_POLL_DELAY = 1.0
EXIT_TIMEOUT = 10.0  # seconds the embedded worker lets running jobs finish at interpreter exit

P = ParamSpec("P")
R = TypeVar("R")


class Job(Generic[P, R]):
    """A function declared as a background job; enqueue it with `.enqueue`, or call it directly."""

    def __init__(self, fn: Callable[P, R], options: dict[str, Any],
                 schedule: Callable[[Any], bool] | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = dict(options)
        self.huey_name: str = self.options.pop("name", None) or fn.__name__
        self.queue: str = self.options.pop("queue", DEFAULT_QUEUE)
        if self.queue not in QUEUES:
            raise ValueError(f"queue must be one of {', '.join(QUEUES)}, not {self.queue!r}")
        self.name = f"{fn.__module__}.{self.huey_name}"  # what Huey's registry and messages use
        self.schedule = schedule

    def __repr__(self) -> str:
        kind = "periodic job" if self.schedule else "job"
        return f"<{kind} {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as if it were not a job."""
        return self.fn(*args, **kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Result | None:
        """Queue a run on the current app's queue; returns Huey's result handle."""
        return _enqueue(self, args, kwargs)

    def enqueue_in(self, seconds: float | timedelta, *args: P.args, **kwargs: P.kwargs) -> Result | None:
        """Queue a run that starts no sooner than `seconds` from now."""
        return _enqueue(self, args, kwargs, delay=seconds)


_registry: dict[str, Job[..., Any]] = {}
_registry_lock = threading.Lock()


def _record(job: Job[P, R]) -> Job[P, R]:
    """Add a job to the registry; two different functions may not share a name."""
    with _registry_lock:
        existing = _registry.get(job.name)
        if existing is not None and existing.fn.__qualname__ != job.fn.__qualname__:
            raise ValueError(f"two jobs are named {job.name}: pass name= to one of them")
        _registry[job.name] = job
    return job


@overload
def task(fn: Callable[P, R], /) -> Job[P, R]: ...
@overload
def task(**options: Any) -> Callable[[Callable[P, R]], Job[P, R]]: ...
def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a job: `@task` or `@task(queue="analysis", retries=3, retry_delay=10, name=...)`."""
    if fn is not None:
        return _record(Job(fn, options))
    return lambda func: _record(Job(func, options))


def periodic_task(schedule: Callable[[Any], bool], **options: Any) -> Callable[[Callable[[], R]], Job[[], R]]:
    """Declare a job that consumers with periodic tasks enqueue when `schedule(now)` says so.

    `schedule` is usually `crontab(...)` (UTC unless given tz=); the function takes no arguments.
    """
    return lambda func: _record(Job(func, options, schedule=schedule))


def crontab(minute: str = "*", hour: str = "*", day: str = "*", month: str = "*",
            day_of_week: str = "*", *, tz: str | None = None) -> Callable[[datetime], bool]:
    """Huey's crontab, read in time zone `tz` (e.g. "Europe/Amsterdam") instead of UTC.

    Huey hands periodic schedules the current moment as a naive UTC datetime; with `tz`, that
    moment is first converted, so `crontab(hour="8", minute="0", tz=...)` follows summer time.
    """
    check = huey_crontab(minute, hour, day, month, day_of_week)
    if tz is None:
        return check
    zone = ZoneInfo(tz)

    def in_zone(moment: datetime) -> bool:
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return check(aware.astimezone(zone).replace(tzinfo=None))

    return in_zone


def registered_jobs() -> dict[str, Job[..., Any]]:
    """Every declared job by name (a copy)."""
    with _registry_lock:
        return dict(_registry)


class JobQueue:
    """One app's Huey instances, one per queue, and the Huey tasks registered on them for our jobs."""

    def __init__(self, app: Flask, hueys: dict[str, Huey]) -> None:
        self.app = app
        self.hueys = hueys
        self.huey = hueys[DEFAULT_QUEUE]
        self._tasks: dict[tuple[str, str], TaskWrapper] = {}
        self._lock = threading.Lock()

    def task_for(self, job: Job[..., Any], queue: str | None = None) -> TaskWrapper:
        """The Huey task of a job on a queue (default: its own), registered now if need be."""
        queue = queue or job.queue
        with self._lock:
            wrapper = self._tasks.get((queue, job.name))
            if wrapper is None:
                wrapper = self._tasks[(queue, job.name)] = self._register(job, queue)
            return wrapper

    def register_all(self) -> None:
        """Register every job declared so far (workers call this before they start).

        Plain jobs go on every queue, so a worker of either queue can run any message; periodic
        jobs only on their own, or each queue's scheduler would enqueue them.
        """
        for job in registered_jobs().values():
            for queue in QUEUES:
                if queue == job.queue or job.schedule is None:
                    self.task_for(job, queue)

    def _register(self, job: Job[..., Any], queue: str) -> TaskWrapper:
        huey = self.hueys[queue]
        run = _in_app_context(self.app, job.fn)
        if job.schedule is not None:
            return huey.periodic_task(job.schedule, name=job.huey_name, **job.options)(run)
        return huey.task(name=job.huey_name, **job.options)(run)


def _in_app_context(app: Flask, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a job so each run has its own app context and database session, and no request.

    The run starts from empty context variables, so a job run inline (immediate mode) sees
    neither the enqueuing request nor its app context, just as in a worker thread.
    """

    def in_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with app.app_context():
            try:
                return fn(*args, **kwargs)
            finally:
                db.session.remove()

    @functools.wraps(fn)  # keeps __module__ and __name__: Huey names the task after them
    def run(*args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(in_context, args, kwargs)

    return run


def _setting(app: Flask, key: str) -> Any:
    return app.config.get(key, DEFAULTS[key])


def queue_name(app: Flask, queue: str) -> str:
    """The Huey name of one of an app's queues: JOBS_NAME for urgent work (as before queues were
    split, so an upgraded install keeps its waiting jobs), JOBS_NAME_analysis for analysis."""
    name = _setting(app, "JOBS_NAME")
    return name if queue == DEFAULT_QUEUE else f"{name}_{queue}"


def _make_huey(app: Flask, queue: str) -> Huey:
    """The Huey instance of one queue, of the kind JOBS asks for."""
    mode, name = _setting(app, "JOBS"), queue_name(app, queue)
    if mode == "embedded":
        path = Path(_setting(app, "JOBS_SQLITE_PATH") or Path(app.instance_path) / "jobs.sqlite3")
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=str(path))
    if mode == "redis":
        return PriorityRedisHuey(name, url=_setting(app, "REDIS_URL"))
    if mode == "immediate":
        return MemoryHuey(name, immediate=True)
    raise RuntimeError(f"JOBS must be one of {', '.join(MODES)}, not {mode!r}")


def init_app(app: Flask) -> Huey:
    """Create the app's queues, register every declared job on them; calling it again is harmless.

    Returns the urgent queue's Huey instance (`get_huey(app, "analysis")` gives the other).
    """
    if "jobs" not in app.extensions:
        queue = JobQueue(app, {name: _make_huey(app, name) for name in QUEUES})
        queue.register_all()
        app.extensions["huey"] = queue.huey
        app.extensions["jobs"] = queue
    return app.extensions["huey"]


def _queue(app: Flask | None = None) -> JobQueue:
    app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions["jobs"]
    except KeyError:
        raise RuntimeError("background jobs are not set up: call jobs.init_app(app)") from None


def get_huey(app: Flask | None = None, queue: str = DEFAULT_QUEUE) -> Huey:
    """The Huey instance of one of an app's queues (default: the current app's urgent queue)."""
    return _queue(app).hueys[queue]


def _enqueue(job: Job[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             delay: float | timedelta | None = None) -> Result | None:
    if not isinstance(job, Job):
        raise TypeError(f"{job!r} is not a job: declare it with @jobs.task")
    queue = _queue()
    wrapper = queue.task_for(job)
    huey = queue.hueys[job.queue]
    # Built directly, not through TaskWrapper.__call__, which would take kwargs such as `id`,
    # `priority` or `delay` meant for the job as options of its own.
    eta = None if delay is None else normalize_time(delay=delay, utc=huey.utc)
    if huey.immediate and eta is None:
        # The job runs right here with its own session; end the caller's transaction first, as a
        # real queue would only see committed data (and SQLite would make the job wait for it).
        db.session.commit()
    return huey.enqueue(wrapper.task_class(args, kwargs, eta=eta))


def enqueue(job: Job[P, Any], *args: P.args, **kwargs: P.kwargs) -> Result | None:
    """Queue a run of a job on the current app's queue."""
    return _enqueue(job, args, kwargs)


def enqueue_in(seconds: float | timedelta, job: Job[P, Any], *args: P.args,
               **kwargs: P.kwargs) -> Result | None:
    """Queue a run of a job that starts no sooner than `seconds` from now."""
    return _enqueue(job, args, kwargs, delay=seconds)


def parse_queues(text: str | None) -> tuple[str, ...]:
    """Queue names from "urgent,analysis" (None or empty: all), in QUEUES order; unknown ones refused."""
    names = {part.strip() for part in (text or "").split(",") if part.strip()} or set(QUEUES)
    unknown = names - set(QUEUES)
    if unknown:
        raise ValueError(f"unknown queue {', '.join(sorted(unknown))}: choose from {', '.join(QUEUES)}")
    return tuple(queue for queue in QUEUES if queue in names)


def _consumer(app: Flask, queue_: str, workers: int | None, periodic: bool,
              consumer_class: type[Consumer] = Consumer, **extra: Any) -> Consumer:
    """A thread-based Huey consumer for one of an app's queues, with every declared job registered."""
    init_app(app)
    queue = _queue(app)
    huey = queue.hueys[queue_]
    if huey.immediate:
        raise RuntimeError("JOBS is 'immediate': jobs run when enqueued, there is no queue to consume")
    queue.register_all()
    return consumer_class(
        huey,
        workers=workers or _setting(app, WORKERS_SETTING[queue_]),
        periodic=periodic,
        worker_type="thread",
        initial_delay=0.1,
        backoff=1.15,
        max_delay=MAX_POLL_DELAY,
        check_worker_health=True,
        **extra,
    )


class _QuietConsumer(Consumer):
    """A consumer that leaves the process's signal handlers alone (it is a guest there)."""

    def _set_signal_handlers(self) -> None:
        pass


class _LeadConsumer(Consumer):
    """The consumer that owns the process's signals; stopping it stops the other queues' too."""

    followers: tuple[Consumer, ...] = ()

    def stop(self, graceful: bool = False) -> None:
        """Stop taking jobs on every queue at once, then let running jobs end (when graceful)."""
        for follower in self.followers:
            follower.stop_flag.set()
        super().stop(graceful)
        for follower in self.followers:
            follower.stop(graceful)


def _supervise(consumer: Consumer) -> None:
    """Restart dead workers now and then, as a consumer's main loop would, until it is stopped."""
    checked = time.monotonic()
    while True:
        try:
            checked = consumer.loop(checked)
        except ConsumerStopped:
            return


def _start_guest(consumer: Consumer) -> threading.Thread:
    """Start a quiet consumer's threads and a supervisor thread for it; returns the supervisor."""
    consumer.start()  # scheduler and worker threads, all daemons
    supervisor = threading.Thread(target=_supervise, args=(consumer,), daemon=True,
                                  name=f"jobs-supervisor-{consumer.huey.name}")
    supervisor.start()
    return supervisor


def run_worker(app: Flask, workers: int | None = None, periodic: bool = True,
               queues: tuple[str, ...] = QUEUES) -> None:
    """Run consumers for the app's queues in this process until stopped; main thread only.

    Each queue gets its own worker threads (`workers` each, default its setting), so a long
    analysis never holds up urgent work. SIGTERM (where huey supports choosing it; SIGINT on
    huey 2.x) stops gracefully: running jobs finish first. The other of the two stops at once,
    losing the running jobs' messages.
    """
    _stop_embedded()  # this process becomes a dedicated worker; do not consume twice
    extra = {}
    if "graceful_signal" in inspect.signature(Consumer.__init__).parameters:
        extra["graceful_signal"] = "TERM"  # what systemd, Docker and Kubernetes send
    lead = _consumer(app, queues[0], workers, periodic, consumer_class=_LeadConsumer, **extra)
    followers = tuple(_consumer(app, queue, workers, periodic, consumer_class=_QuietConsumer)
                      for queue in queues[1:])
    lead.followers = followers
    for queue, consumer in zip(queues, (lead, *followers), strict=True):
        logger.info("jobs worker for queue %s of %r (%s): %d threads, periodic tasks %s", queue,
                    _setting(app, "JOBS_NAME"), _setting(app, "JOBS"), consumer.workers,
                    "on" if periodic else "off")
    for follower in followers:
        _start_guest(follower)
    lead.run()


class EmbeddedWorker:
    """Consumers of every queue, running in daemon threads of the current process."""

    def __init__(self, app: Flask, consumers: list[Consumer]) -> None:
        self.app = app
        self.consumers = consumers
        self._supervisors: list[threading.Thread] = []
        self._stopped = not consumers

    @property
    def running(self) -> bool:
        """Whether the consumers are still running."""
        return not self._stopped

    def _start(self) -> None:
        if not self.consumers:
            return
        self._supervisors = [_start_guest(consumer) for consumer in self.consumers]
        atexit.register(self._stop_at_exit)

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Take no new jobs, let running ones finish (up to `timeout` s); True when all stopped."""
        global _embedded
        with _embedded_lock:
            if _embedded is self:
                _embedded = None
        if not self.consumers:
            return True
        self._stopped = True
        atexit.unregister(self._stop_at_exit)
        for consumer in self.consumers:
            consumer.stop_flag.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = [*self._supervisors, *(consumer.scheduler for consumer in self.consumers),
                   *(thread for consumer in self.consumers for _, thread in consumer.worker_threads)]
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _stop_at_exit(self) -> None:
        self.stop(EXIT_TIMEOUT)


_embedded: EmbeddedWorker | None = None
_embedded_lock = threading.Lock()


def start_embedded_worker(app: Flask, *, workers: int | None = None,
                          periodic: bool = True) -> EmbeddedWorker:
    """Consume the app's queues (each with its own threads) in daemon threads of this process.

    Returns a handle with `.stop()`. One per process: calling it again for the same app returns
    the running handle, for another app it raises. In immediate mode there is nothing to consume
    and the handle does nothing.
    """
    global _embedded
    init_app(app)
    with _embedded_lock:
        if _embedded is not None:
            if _embedded.app is app:
                return _embedded
            raise RuntimeError("an embedded jobs worker already runs in this process for another app")
        consumers = [] if get_huey(app).immediate else [
            _consumer(app, queue, workers, periodic, consumer_class=_QuietConsumer)
            for queue in QUEUES]
        handle = EmbeddedWorker(app, consumers)
        handle._start()
        if consumers:
            _embedded = handle
        return handle


def _stop_embedded() -> None:
    with _embedded_lock:
        handle = _embedded
    if handle is not None:
        handle.stop()


@click.command("worker")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker threads per queue (default: JOBS_WORKERS for urgent, "
                   "JOBS_ANALYSIS_WORKERS for analysis).")
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues to consume, each with its own worker threads.")
@click.option("--periodic/--no-periodic", default=True, show_default=True,
              help="Also enqueue periodic tasks; exactly one worker per queue should.")
@with_appcontext
def worker_command(workers: int | None, queues: str, periodic: bool) -> None:
    """Run background jobs until stopped (SIGTERM: finish running jobs first)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        chosen = parse_queues(queues)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--queues") from None
    if init_app(app).immediate:
        raise click.ClickException("JOBS is 'immediate': jobs run when enqueued, there is no worker to run")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(app, workers, periodic, chosen)
