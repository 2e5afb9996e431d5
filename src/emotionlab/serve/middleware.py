"""The ASGI guard in front of every HTTP route: admission, body size and body read timeout.

uvicorn bounds connections (``limit_concurrency``) and idle keep-alive time, but not how long a request body
may take; a client that sends headers and then trickles (or never sends) the body would hold its connection
for good. Here every ``receive()`` of the body must arrive within ``body_timeout_s`` (else 408 and the
connection is closed), the body is counted against ``max_body`` (413), and an inference route is refused
with 503 + ``Retry-After`` *before* its body is read when the worker pool is already full.
"""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import err

_CLOSE = {"Connection": "close"}  # the body was not (fully) read: do not try to reuse the connection


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` so that FastAPI's body parsing passes it on as a 413 (not a 400)."""

    def __init__(self, seen: int, limit: int):
        super().__init__(413, f"request body of more than {seen:,} bytes is over the limit of {limit:,}",
                         headers=_CLOSE)


class _BodyTimeout(StarletteHTTPException):
    """Raised from ``receive`` when the next body chunk is late: 408 and close."""

    def __init__(self, timeout: float, seen: int):
        super().__init__(408, f"the request body stalled: no data for {timeout:g} s after {seen:,} bytes; "
                              "send the whole body promptly", headers=_CLOSE)


class GuardMiddleware:
    """Admission before the body, ``max_body`` while reading it, and a per-chunk read deadline."""

    def __init__(self, app: ASGIApp, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        s = self.state.settings
        limit, timeout = s.max_body, s.body_timeout_s
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    return await err(400, "bad_request", "Content-Length is not a number",
                                     headers=_CLOSE)(scope, receive, send)
                if n > limit:
                    return await err(413, "payload_too_large", f"request body of {n:,} bytes is over the limit "
                                                               f"of {limit:,}", headers=_CLOSE)(scope, receive, send)
        if scope.get("method") == "POST" and scope.get("path", "").startswith("/v1/"):
            busy = self.state.busy_error()
            if busy is not None:  # decided now: the body is never read
                return await err(503, busy.error, busy.detail, retry_after=s.retry_after_s,
                                 headers=_CLOSE)(scope, receive, send)
        seen = 0
        body_done = False
        started = False

        async def guarded_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body, receive() only reports a disconnect: no deadline
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise _BodyTimeout(timeout, seen) from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(seen, limit)
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
        except (_BodyTooLarge, _BodyTimeout) as e:
            if started:
                raise
            await err(e.status_code, "payload_too_large" if e.status_code == 413 else "timeout", e.detail,
                      headers=_CLOSE)(scope, receive, send)
