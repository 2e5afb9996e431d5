"""The ASGI guard in front of every HTTP route: admission, body size and body read timeout.

uvicorn bounds connections (``limit_concurrency``) and idle keep-alive time, but not how long a request body
may take; a client that sends headers and then trickles (or never sends) the body would hold its connection
for good. Here the body has a deadline that grows with what arrived, as Apache's ``mod_reqtimeout`` does:
``body_timeout_s`` plus one second per ``body_min_rate`` bytes received, and no chunk may be later than
``body_timeout_s`` (else 408 and the connection is closed). A client trickling 1 byte every 5 s is closed
after ``body_timeout_s``; a 10 MB upload at 64 KB/s still fits. The body is counted against ``max_body``
(413), and an inference route is refused with 503 + ``Retry-After`` *before* its body is read when the
worker pool is already full. A client that goes away mid-body costs one log line, not a traceback.

A body announced over ``max_body`` (by ``Content-Length``) gets its 413 at once, and is then read and
dropped (up to ``_DRAIN_FACTOR`` x ``max_body``, within the same deadline) before the connection closes, as
nginx's lingering close does: closing with unread data makes the kernel send a reset, and clients that
write the whole body before reading (``requests``, ``curl`` without ``Expect``) would see "connection
reset" instead of the 413 that says what was wrong.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import err

_CLOSE = {"Connection": "close"}  # the body was not (fully) read: do not try to reuse the connection
_DRAIN_FACTOR = 4  # bodies announced up to this many times max_body are drained before the 413
log = logging.getLogger("emotionlab.serve")


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` so that FastAPI's body parsing passes it on as a 413 (not a 400)."""

    def __init__(self, seen: int, limit: int):
        super().__init__(413, f"request body of more than {seen:,} bytes is over the limit of {limit:,}",
                         headers=_CLOSE)


class _BodyTimeout(StarletteHTTPException):
    """Raised from ``receive`` when the next body chunk is late: 408 and close."""

    def __init__(self, detail: str):
        super().__init__(408, detail, headers=_CLOSE)


class _Deadline:
    """When the body must be complete: ``timeout`` s plus 1 s per ``min_rate`` bytes seen, and no gap
    between chunks longer than ``timeout``."""

    def __init__(self, timeout: float, min_rate: float):
        self.timeout, self.min_rate, self.t0, self.seen = timeout, min_rate, time.monotonic(), 0

    def wait_s(self) -> float:
        total_left = self.t0 + self.timeout + self.seen / self.min_rate - time.monotonic()
        return max(0.0, min(self.timeout, total_left))

    async def receive(self, receive: Receive) -> Message:
        wait = self.wait_s()
        try:
            msg = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            took = time.monotonic() - self.t0
            if wait >= self.timeout:
                why = f"no data for {self.timeout:g} s after {self.seen:,} bytes"
            else:
                why = (f"{self.seen:,} bytes in {took:.1f} s is slower than the minimum of "
                       f"{self.min_rate:,.0f} bytes/s")
            raise _BodyTimeout(f"the request body is too slow: {why}; send the whole body promptly") from None
        if msg["type"] == "http.request":
            self.seen += len(msg.get("body", b""))
        return msg


class GuardMiddleware:
    """Admission before the body, ``max_body`` while reading it, and a body deadline."""

    def __init__(self, app: ASGIApp, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        s = self.state.settings
        limit = s.max_body
        deadline = _Deadline(s.body_timeout_s, s.body_min_rate)
        headers = dict(scope.get("headers", []))
        if b"content-length" in headers:
            try:
                n = int(headers[b"content-length"])
            except ValueError:
                return await err(400, "bad_request", "Content-Length is not a number",
                                 headers=_CLOSE)(scope, receive, send)
            if n > limit:
                refusal = err(413, "payload_too_large", f"request body of {n:,} bytes is over the limit of "
                                                        f"{limit:,}", headers=_CLOSE)
                if n <= _DRAIN_FACTOR * limit and b"expect" not in headers:
                    return await _answer_then_drain(refusal, scope, receive, send, deadline)
                return await refusal(scope, receive, send)
        if scope.get("method") == "POST" and scope.get("path", "").startswith("/v1/"):
            busy = self.state.busy_error()
            if busy is not None:  # decided now: the body is never read
                return await err(503, busy.error, busy.detail, retry_after=s.retry_after_s,
                                 headers=_CLOSE)(scope, receive, send)
        body_done = False
        started = False

        async def guarded_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive() only reports a disconnect: no deadline
                return await receive()
            msg = await deadline.receive(receive)
            if msg["type"] == "http.request":
                if deadline.seen > limit:
                    raise _BodyTooLarge(deadline.seen, limit)
                body_done = not msg.get("more_body", False)
            else:
                body_done = True
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing to report
            log.info("%s %s: client disconnected after %d body bytes", scope.get("method"),
                     scope.get("path"), deadline.seen)
        except (_BodyTooLarge, _BodyTimeout) as e:
            if started:
                raise
            await err(e.status_code, "payload_too_large" if e.status_code == 413 else "timeout", e.detail,
                      headers=_CLOSE)(scope, receive, send)


async def _answer_then_drain(response: ASGIApp, scope: Scope, receive: Receive, send: Send,
                             deadline: _Deadline) -> None:
    """Send ``response`` whole but keep the message open, read and drop the body (bounded by the caller's
    size check and by ``deadline``), then end it: the client has its answer at once, and the close that
    follows finds no unread data, so no reset replaces the answer of a client that writes before it reads."""

    async def send_open(msg: Message) -> None:
        if msg["type"] == "http.response.body" and not msg.get("more_body", False):
            msg = {**msg, "more_body": True}
        await send(msg)

    await response(scope, receive, send_open)
    try:
        while True:
            msg = await deadline.receive(receive)
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                break
    except _BodyTimeout:
        pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})
