"""Serve an ASGI app on 127.0.0.1 in a background thread (for emulators in tests)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

HOST = "127.0.0.1"


@contextlib.contextmanager
def serve_in_thread(app: Any, *, port: int = 0, timeout: float = 15.0,
                    lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 until the block ends; yield its base URL.

    With `port=0` the OS picks a free port while binding (no race)."""
    server = uvicorn.Server(uvicorn.Config(
        app, host=HOST, port=port, log_level="warning", lifespan=lifespan,
        timeout_graceful_shutdown=2,
    ))
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="alloy-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            detail = f": {failure[0]!r}" if failure else ""
            raise RuntimeError(f"uvicorn did not start serving {type(app).__name__}{detail}")
        time.sleep(0.01)
    bound: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
