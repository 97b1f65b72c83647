"""The request path's database reads, two ways, measured in the same run: through an async
SQLAlchemy session (aiosqlite: every statement hops to a thread of its own) and through
`alloy_oauth.store.reads.Reader` (the way the server reads on the request path).

Run:  .venv/bin/python -m bench.reads            (a few seconds; SQLite)
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from alloy_oauth.accounts import authenticate, create_account_with_key
from alloy_oauth.crypto import sha256
from alloy_oauth.store.db import create_engine, migrate, sessionmaker
from alloy_oauth.store.models import ApiKey
from alloy_oauth.store.reads import Reader

ROUNDS = 7
PER_ROUND = 300


async def per_call_us(call: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(50):
        await call()
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(PER_ROUND):
            await call()
        rounds.append((time.perf_counter() - started) / PER_ROUND * 1e6)
    return rounds


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="alloy-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'reads.db'}"
        migrate(url)
        engine = create_engine(url)
        sessions = sessionmaker(engine)
        reader = Reader(engine)
        try:
            _, key = await create_account_with_key(sessions, "bench")
            key_hash = sha256(key)

            async def session_read() -> object:
                async with sessions() as db:
                    return (await db.execute(
                        select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar()

            async def reader_read() -> object:
                return await authenticate(reader, key)

            slow = await per_call_us(session_read)
            fast = await per_call_us(reader_read)
        finally:
            await reader.aclose()
            await engine.dispose()
    print(f"API key check, median of {ROUNDS} x {PER_ROUND} calls:")
    print(f"  async session (aiosqlite): {statistics.median(slow):8.1f} µs per read")
    print(f"  Reader (request path):     {statistics.median(fast):8.1f} µs per read")
    print(f"  ratio: the Reader is {statistics.median(slow) / statistics.median(fast):.1f}x "
          "faster")


if __name__ == "__main__":
    asyncio.run(main())
