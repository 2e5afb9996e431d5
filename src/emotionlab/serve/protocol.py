"""uvicorn options for the service, and uvicorn's h11 protocol with a deadline for the request head.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no deadline for a request head: a
connection that sends nothing, or half a header line, is held for good. With ``limit_concurrency`` those
connections count against the cap, so a few hundred of them would make every real request a 503. The
protocol below closes a connection whose request head is not complete ``header_timeout_s`` after it was
opened (or after its previous response); the body has its own per-chunk deadline in
:class:`~emotionlab.serve.middleware.GuardMiddleware`.
"""
from __future__ import annotations

from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServeSettings


def head_timeout_protocol(timeout: float) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass that closes connections whose request head is late by ``timeout`` s."""

    class HeadTimeoutH11Protocol(H11Protocol):
        _head_timer: Any = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()  # the next request head of a keep-alive connection has the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(timeout, self._head_deadline)

        def _head_deadline(self) -> None:
            self._head_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE:  # no complete request head yet (a request in flight is not IDLE)
                self.transport.close()

    return HeadTimeoutH11Protocol


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The ``uvicorn.run`` / ``uvicorn.Config`` keyword arguments that bound connections for ``settings``."""
    return {"limit_concurrency": settings.max_connections, "timeout_keep_alive": settings.keep_alive_s,
            "http": head_timeout_protocol(settings.header_timeout_s), "ws_max_size": settings.max_body + 1024}
