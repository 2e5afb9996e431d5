"""The inference thread pool: cancellable jobs, honest counts, and replacement of stuck workers.

``concurrent.futures.ThreadPoolExecutor`` cannot do what a public service needs when a job passes its deadline:
it cannot tell the job to stop, and a thread stuck in it silently lowers the capacity. Here every job runs in
:func:`emotionlab.inference.cancel.cancel_scope` with its own event; :meth:`WorkerPool.abandon` (called on
timeout or client disconnect) sets the event, so cooperative code stops at its next ``checkpoint()``; a job that
is still running is counted as *stuck* (``/health`` says ``degraded``) and a replacement thread is started so
the number of threads serving new work stays ``workers`` (at most ``max_stuck`` extra threads). ``pending``
counts a job until it really ends, so admission control sees stuck work too.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..inference.cancel import cancel_scope

log = logging.getLogger("emotionlab.serve")


class Job:
    """One submitted call; ``future`` gets its result, ``event`` cancels it."""

    __slots__ = ("fn", "args", "future", "event", "thread", "stuck", "replaced", "done")

    def __init__(self, fn: Callable[..., Any], args: tuple):
        self.fn, self.args = fn, args
        self.future: Future = Future()
        self.event = threading.Event()
        self.thread: int | None = None  # ident of the thread running it
        self.stuck = self.replaced = self.done = False


class WorkerPool:
    """``workers`` daemon threads (started on first use) taking :class:`Job` s from one queue.

    ``on_replace(thread_ident)`` is called (under no pool lock) when a stuck job's thread gets a replacement,
    so that per-thread resources (a face recognizer) can be replaced too.
    """

    def __init__(self, workers: int, max_stuck: int = 8, name: str = "emotionlab-infer",
                 on_replace: Callable[[int], None] | None = None):
        self.workers, self.max_stuck, self.name, self.on_replace = int(workers), int(max_stuck), name, on_replace
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # live threads
        self._extra = 0  # replacement threads currently alive (one per replaced stuck job)
        self._pending = 0  # submitted jobs that have not ended (queued, running or stuck)
        self._stuck = 0
        self._closed = False
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ counts (read without the lock: ints)
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def stuck(self) -> int:
        """Jobs still running after they were abandoned (deadline passed)."""
        return self._stuck

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ submit / abandon
    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        job = Job(fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._pending += 1
            while self._threads < self.workers + self._extra:
                self._start_thread()
        self._q.put(job)
        return job

    def abandon(self, job: Job) -> bool:
        """Give up on ``job``: cancel it if still queued, else signal it to stop; True when it is now stuck."""
        replace = False
        with self._lock:
            job.event.set()
            if job.done or job.stuck or job.future.cancel():  # cancel() succeeds only while it is still queued
                return job.stuck and not job.done
            job.stuck = True
            self._stuck += 1
            if self._extra < self.max_stuck and not self._closed:
                job.replaced = replace = True
                self._extra += 1
                self._start_thread()
        if replace and job.thread is not None and self.on_replace is not None:
            self.on_replace(job.thread)
        return True

    def shutdown(self) -> None:
        """Stop idle threads; running (or stuck) ones end after their job. Nothing waits."""
        with self._lock:
            self._closed = True
            n = self._threads
        for _ in range(n):
            self._q.put(None)

    # ------------------------------------------------------------------ threads
    def _start_thread(self) -> None:  # under self._lock
        t = threading.Thread(target=self._work, name=f"{self.name}-{next(self._ids)}", daemon=True)
        self._threads += 1
        t.start()

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            job = self._q.get()
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            if not job.future.set_running_or_notify_cancel():  # abandoned while it waited in the queue
                with self._lock:
                    self._pending -= 1
                    job.done = True
                continue
            with self._lock:
                job.thread = me
            result: Any = None
            error: BaseException | None = None
            try:
                with cancel_scope(job.event):
                    result = job.fn(*job.args)
            except BaseException as e:  # reported to the waiting request (or dropped if it gave up); counts stay true
                error = e
            with self._lock:
                self._pending -= 1
                job.done = True
                if job.stuck:
                    self._stuck -= 1
                    log.warning("a job abandoned after its deadline ended on %s (%s)", threading.current_thread().name,
                                "cancelled" if error is not None else "finished")
                retire = job.replaced  # a replacement took this thread's place
                if retire:
                    self._extra -= 1
                    self._threads -= 1
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
            job = None  # type: ignore[assignment]  # drop references before waiting for the next one
            if retire:
                return
