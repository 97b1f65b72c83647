"""Benchmarks of the hot paths, with ratios measured in the same run on the same machine.

1. Throughput of `GET /connections/{id}/token` (API key check, database read, decryption)
   against a bare endpoint (`GET /healthz`) on the same server stack. Aim: at least 0.5.
2. Latency of a provider API call through `ANY /connections/{id}/proxy/{path}` against the
   same call made directly. Aim: the proxy adds at most 1.5 ms at the median.

Run:  .venv/bin/python -m bench.run            (about a minute; --help for the knobs)

The server is the real one (uvicorn + the app, one worker, access log off, SQLite), started
as a subprocess; the provider API is bench/upstream.py. The load comes from wrk when it is
installed (`apt-get install -y wrk`) and otherwise from the small asyncio HTTP/1.1 client
below, which keeps connections alive and reads Content-Length bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx2
import yaml
from sqlalchemy import select
from tests.support.servers import HOST, free_port

from alloy_oauth.accounts import create_account_with_key
from alloy_oauth.crypto import SecretBox, new_key, parse_keys
from alloy_oauth.ids import new_id
from alloy_oauth.store.db import create_engine, migrate, sessionmaker
from alloy_oauth.store.models import Connection, User, utcnow


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=out,
                                start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited early:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within 30 s")


# --- the load generator ------------------------------------------------------------------------

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def request_bytes(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}",
             *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    found = _LENGTH.search(head)
    if found is None:
        raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
    await reader.readexactly(int(found.group(1)))
    return int(head[9:12])


async def throughput(port: int, request: bytes, *, connections: int, seconds: float) -> float:
    """Requests per second that all answered 200, over `seconds` after a 1 s warm-up."""
    done = 0
    failed = 0
    start = time.perf_counter()
    measure_from = start + 1.0
    stop = measure_from + seconds

    async def worker() -> None:
        nonlocal done, failed
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (now := time.perf_counter()) < stop:
                status = await _one(reader, writer, request)
                if now >= measure_from:
                    if status == 200:
                        done += 1
                    else:
                        failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    if failed:
        raise RuntimeError(f"{failed} answers were not 200")
    return done / seconds


async def latencies(port: int, request: bytes, count: int) -> list[float]:
    """Milliseconds of `count` sequential requests on one kept-alive connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    took: list[float] = []
    try:
        for i in range(count + 200):
            started = time.perf_counter()
            status = await _one(reader, writer, request)
            if status != 200:
                raise RuntimeError(f"answer {status}")
            if i >= 200:  # the first 200 warm up
                took.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return took


def wrk_throughput(url: str, headers: dict[str, str], *, connections: int,
                   seconds: float) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(found.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- setting up -------------------------------------------------------------------------------

async def seed(database_url: str, keys: str) -> tuple[str, str]:
    """An account, its API key and a connection with a token valid for a day."""
    engine = create_engine(database_url)
    try:
        sessions = sessionmaker(engine)
        account_id, api_key = await create_account_with_key(sessions, "bench")
        box = SecretBox(parse_keys(keys))
        conn_id = new_id("conn")
        now = utcnow()
        async with sessions.begin() as db:
            user_id = (await db.execute(
                select(User.id).where(User.account_id == account_id))).scalar_one()
            db.add(Connection(
                id=conn_id, credential_id=new_id("cred"), account_id=account_id,
                user_id=user_id, connector_id="bench", credential_type="oauth2",
                name="bench", status="connected", scopes=[], metadata_={},
                access_token_enc=box.encrypt("bench-access-token", f"conn:{conn_id}:access"),
                refresh_token_enc=box.encrypt("bench-refresh-token", f"conn:{conn_id}:refresh"),
                token_type="Bearer", expires_at=now + timedelta(days=1), issued_at=now,
                last_refresh_at=now))
        return api_key, conn_id
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000, help="per latency series")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: a throwaway local cluster (needs PostgreSQL installed)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    use_wrk = args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk") is not None)
    if args.tool == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or use --tool python)")

    with tempfile.TemporaryDirectory(prefix="alloy-bench-") as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        up_port, port = free_port(), free_port()
        database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        if args.database == "postgres":
            from tests.support.postgres import start_postgres

            database_url = stack.enter_context(start_postgres()).create_database("bench")
        keys = new_key("bench")
        providers = tmp / "providers.yaml"
        providers.write_text(yaml.safe_dump({"bench": {
            "name": "Bench", "authorization_url": f"http://{HOST}:{up_port}/authorize",
            "token_url": f"http://{HOST}:{up_port}/token",
            "api_base_url": f"http://{HOST}:{up_port}/api"}}))
        env = {"ALLOY_DATABASE_URL": database_url, "ALLOY_ENCRYPTION_KEYS": keys,
               "ALLOY_PUBLIC_URL": f"http://{HOST}:{port}", "ALLOY_PROVIDERS_FILE": str(providers),
               "ALLOY_CONNECTOR_BENCH_CLIENT_ID": "bench",
               "ALLOY_CONNECTOR_BENCH_CLIENT_SECRET": "bench-secret",
               "ALLOY_BACKGROUND_REFRESH": "false", "ALLOY_WEBHOOK_DELIVERY": "false"}
        factory = "alloy_oauth.server.app:app_from_env"
        migrate(database_url)
        api_key, conn_id = asyncio.run(seed(database_url, keys))
        auth = {"Authorization": f"Bearer {api_key}"}
        server = [sys.executable, "-m", "uvicorn", factory,
                  "--factory", "--host", HOST, "--port", str(port), "--no-access-log",
                  "--log-level", "warning"]
        with process([sys.executable, "-m", "bench.upstream", str(up_port)], {},
                     tmp / "upstream.log") as upstream, \
                process(server, env, tmp / "server.log") as alloy:
            wait_ready(f"http://{HOST}:{up_port}/api/ready", upstream, tmp / "upstream.log")
            wait_ready(f"http://{HOST}:{port}/healthz", alloy, tmp / "server.log")
            report = asyncio.run(measure(args, use_wrk, port, up_port, auth, conn_id,
                                         args.database, alloy.pid))
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


async def measure(args: argparse.Namespace, use_wrk: bool, port: int, up_port: int,
                  auth: dict[str, str], conn_id: str, database: str, server_pid: int) -> str:
    bare_path, token_path = "/healthz", f"/connections/{conn_id}/token"
    proxy_path, direct_path = f"/connections/{conn_id}/proxy/me", "/api/me"

    async def rate(path: str, headers: dict[str, str]) -> tuple[float, float]:
        """Requests per second, and the server's CPU milliseconds per request meanwhile
        (the second is what the server itself spends: it does not depend on the load
        generator or on other processes sharing the machine)."""
        cpu_before = cpu_seconds(server_pid)
        if use_wrk:
            per_second = await asyncio.to_thread(
                wrk_throughput, f"http://{HOST}:{port}{path}", headers,
                connections=args.connections, seconds=args.seconds)
        else:
            per_second = await throughput(port, request_bytes(port, path, headers),
                                          connections=args.connections, seconds=args.seconds)
        # The asyncio client's 1 s warm-up is load too; wrk has none.
        loaded = args.seconds + (0 if use_wrk else 1)
        cpu_ms = (cpu_seconds(server_pid) - cpu_before) * 1000 / (per_second * loaded)
        return per_second, cpu_ms

    bare: list[float] = []
    token: list[float] = []
    bare_cpu: list[float] = []
    token_cpu: list[float] = []
    for _ in range(args.rounds):  # interleaved, so drift affects both alike
        rate_b, cpu_b = await rate(bare_path, {})
        rate_t, cpu_t = await rate(token_path, auth)
        bare.append(rate_b)
        token.append(rate_t)
        bare_cpu.append(cpu_b)
        token_cpu.append(cpu_t)
    ratios = [t / b for b, t in zip(bare, token, strict=True)]
    cpu_ratio = statistics.median(bare_cpu) / statistics.median(token_cpu)

    direct_times: list[float] = []
    proxy_times: list[float] = []
    for _ in range(2):
        direct_times += await latencies(up_port, request_bytes(up_port, direct_path, {}),
                                        args.requests // 2)
        proxy_times += await latencies(port, request_bytes(port, proxy_path, auth),
                                       args.requests // 2)

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=100)[int(p) - 1]

    d50, p50 = statistics.median(direct_times), statistics.median(proxy_times)
    overhead = p50 - d50
    ratio = statistics.median(ratios)
    tool = "wrk" if use_wrk else "bench/run.py's asyncio client"
    lines = [
        f"## alloy-oauth benchmark ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}. Database: {database}. "
        f"Load: {tool}, {args.connections} connections, "
        f"{args.rounds} x {args.seconds:g} s per endpoint (interleaved); latency: "
        f"{len(direct_times)} sequential requests each on one kept-alive connection.",
        "",
        "| measure | result |",
        "| --- | --- |",
        f"| bare `GET /healthz` | {statistics.median(bare):,.0f} req/s "
        f"(runs: {', '.join(f'{b:,.0f}' for b in bare)}) |",
        f"| `GET /connections/{{id}}/token` | {statistics.median(token):,.0f} req/s "
        f"(runs: {', '.join(f'{t:,.0f}' for t in token)}) |",
        f"| **token / bare throughput** | **{ratio:.2f}** (aim: at least 0.50; "
        f"{'met' if ratio >= 0.5 else 'NOT met'}) |",
        f"| server CPU per request, bare / token | {statistics.median(bare_cpu):.3f} ms / "
        f"{statistics.median(token_cpu):.3f} ms (bare / token = {cpu_ratio:.2f}) |",
        f"| direct call to the API, median / p90 | {d50:.3f} ms / {q(direct_times, 90):.3f} ms |",
        f"| same call through the proxy, median / p90 | {p50:.3f} ms / "
        f"{q(proxy_times, 90):.3f} ms |",
        f"| **proxy overhead at the median** | **{overhead:.3f} ms** (aim: at most 1.5 ms; "
        f"{'met' if overhead <= 1.5 else 'NOT met'}) |",
    ]
    if not use_wrk:
        lines += ["", "(wrk not found: `apt-get install -y wrk` to measure with it.)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
