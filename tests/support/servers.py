"""Run test servers on 127.0.0.1: ASGI apps in a uvicorn thread, helpers in subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alloy_oauth.testing import serve_in_thread

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (prefer port=0 where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_asgi(app: Any, *, port: int | None = None, timeout: float = 15.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread, lifespan on; yield its base URL.

    The same runner users get for emulators (`alloy_oauth.testing.serve_in_thread`)."""
    with serve_in_thread(app, port=port or 0, timeout=timeout, lifespan="on") as url:
        yield url


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
