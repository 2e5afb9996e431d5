"""Cooperative cancellation of inference work, so a request past its deadline really stops.

Python threads cannot be killed. Instead the code that serves a request runs inside :func:`cancel_scope` with
a :class:`threading.Event`; the pipeline calls :func:`checkpoint` between its bounded steps (after decoding,
between detector tiles, before classification), which raises :class:`Cancelled` once the event is set. Every
step is bounded by the decode guard and the tile cap, so a cancelled job frees its worker within one step.
Outside a scope :func:`checkpoint` costs one attribute lookup and never raises.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class Cancelled(RuntimeError):
    """The work was cancelled (deadline passed, client gone)."""


@contextmanager
def cancel_scope(event: threading.Event) -> Iterator[threading.Event]:
    """Run the body with ``event`` as this thread's cancel signal (scopes nest; the inner one wins)."""
    prev = getattr(_local, "event", None)
    _local.event = event
    try:
        yield event
    finally:
        _local.event = prev


def checkpoint() -> None:
    """Raise :class:`Cancelled` if the current thread's work was cancelled."""
    ev = getattr(_local, "event", None)
    if ev is not None and ev.is_set():
        raise Cancelled("cancelled: the request passed its deadline")
