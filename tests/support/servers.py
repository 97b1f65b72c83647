"""Run test servers on 127.0.0.1: ASGI apps in a uvicorn thread, helpers in subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (prefer port=0 where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def run_asgi(app: Any, *, port: int | None = None, timeout: float = 15.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yield "http://127.0.0.1:PORT".

    The event loop lives in that thread; lifespan is on. Without `port` the OS picks a free
    one (no race). On exit the server shuts down, running lifespan shutdown.
    """
    config = uvicorn.Config(
        app,
        host=HOST,
        port=0 if port is None else port,
        log_level="warning",
        lifespan="on",
        # A test that leaves a slow request hanging must not stall the shutdown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit on startup failure too: report it below
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"uvicorn-{type(app).__name__}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            detail = f": {failure[0]!r}" if failure else ""
            raise RuntimeError(
                f"uvicorn exited before it started serving{detail} (app traceback logged above)"
            )
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"uvicorn did not start within {timeout} s")
        time.sleep(0.01)
    bound_port: int = server.servers[0].sockets[0].getsockname()[1]
    if not _accepts_connections(bound_port):
        server.should_exit = True
        thread.join(5)
        raise RuntimeError(f"uvicorn reported started but port {bound_port} refuses connections")
    try:
        yield f"http://{HOST}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)


@dataclass
class RunningProcess:
    """A subprocess started by `run_process` that printed its ready line."""

    process: subprocess.Popen[str]
    ready_line: str
    stdout_lines: list[str] = field(default_factory=list)
    _stderr_path: Path | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        if self._stderr_path is None:
            return ""
        return self._stderr_path.read_text(errors="replace")


def _stop_group(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def run_process(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ready_line_prefix: str,
    timeout: float = 20.0,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[RunningProcess]:
    """Start `cmd` in its own process group and wait for a stdout line starting with
    `ready_line_prefix`; yield a `RunningProcess`.

    `env` adds to (and overrides) the current environment. If the process exits or times out
    before it is ready, raise RuntimeError carrying its stderr. On exit the whole process group
    is terminated (SIGTERM, then SIGKILL).
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="alloy-proc-") as tmp:
        stderr_path = Path(tmp) / "stderr.txt"
        with stderr_path.open("w") as stderr_file:
            process = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                text=True,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        lines: list[str] = []
        ready = threading.Event()
        ready_line: list[str] = []

        # Keep draining stdout for the life of the process so a chatty child never blocks.
        def reader() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                if not ready.is_set() and line.startswith(ready_line_prefix):
                    ready_line.append(line)
                    ready.set()
            ready.set()  # EOF: wake the waiter so it sees the exit

        thread = threading.Thread(target=reader, name=f"stdout-{Path(cmd[0]).name}", daemon=True)
        thread.start()
        try:
            ready.wait(timeout)
            if not ready_line:
                if ready.is_set():  # stdout closed: the process is exiting, get its code
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(2)
                timed_out = process.poll() is None
                _stop_group(process)
                thread.join(2)
                what = (
                    f"did not print {ready_line_prefix!r} within {timeout} s"
                    if timed_out
                    else f"exited with code {process.returncode} before it was ready"
                )
                stderr_text = stderr_path.read_text(errors="replace").strip()
                stdout_text = "\n".join(lines).strip()
                raise RuntimeError(
                    f"{Path(cmd[0]).name} {what}\n"
                    f"--- stderr ---\n{stderr_text[-4000:]}\n"
                    f"--- stdout ---\n{stdout_text[-2000:]}"
                )
            yield RunningProcess(
                process=process,
                ready_line=ready_line[0],
                stdout_lines=lines,
                _stderr_path=stderr_path,
            )
        finally:
            _stop_group(process)
            thread.join(2)
            if process.stdout is not None:
                process.stdout.close()
