"""The body deadline: a request's whole body must arrive within `[web] body_timeout` of its headers, else the
request ends with 408 and a JSON reason, and the connection is closed. A pure ASGI middleware around
`receive`, so every route (the app's own and the plugins' webhooks, whatever reads the body) gets it.
closeloop/web/server.py closes a connection whose body outlives the deadline when nothing reads it."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closeloop.web.requests import Reject


class BodyDeadline:
    """Raises Reject(408, Connection: close) from `receive` once `seconds` have passed since the request
    started and its body is not complete; the app's Reject handler answers it."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # the body is in: what comes next is the disconnect, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise Reject(408, f"the request body did not arrive within {self.seconds:g}s",
                             {"Connection": "close"}) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)

