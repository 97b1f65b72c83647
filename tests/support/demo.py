"""`alloy-oauth demo` as a subprocess, with the development API key it prints."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .servers import RunningProcess, free_port, run_process

BIN = Path(sys.executable).parent / "alloy-oauth"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}


@dataclass(frozen=True)
class Demo:
    port: int
    app_port: int
    api_key: str = field(repr=False)
    process: RunningProcess

    @property
    def server(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def example(self) -> str:
        return f"http://localhost:{self.app_port}"


@contextlib.contextmanager
def run_demo(cwd: Path, env: dict[str, str] | None = None) -> Iterator[Demo]:
    port, app_port = free_port(), free_port()
    with run_process([str(BIN), "demo", "--port", str(port), "--app-port", str(app_port)],
                     env={**CLEAN_ENV, **(env or {})},
                     ready_line_prefix="alloy-oauth demo is running", cwd=cwd,
                     timeout=30) as proc:
        deadline = time.monotonic() + 5
        while not any("ALLOY_API_KEY=" in line for line in proc.stdout_lines):
            assert time.monotonic() < deadline, "the demo printed no API key"
            time.sleep(0.02)
        key = next(line for line in proc.stdout_lines if "ALLOY_API_KEY=" in line)
        yield Demo(port, app_port, key.split("=", 1)[1].strip(), proc)
