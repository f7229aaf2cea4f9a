"""Open many PostgreSQL sessions and keep them idle, for the scale benchmark.

Usage: idle_connections.py CONNINFO N CONCURRENCY DEADLINE_S

Opens N sessions with psycopg 3 (asyncio), at most CONCURRENCY connecting at
once, each fully started up and authenticated (psycopg returns only after
ReadyForQuery). Prints `progress opened=K seconds=S` every 500 sessions and
`ready opened=N seconds=S` once all are open, then leaves them idle and reads
commands, one a line, from stdin:

- `check`: runs `SELECT pan FROM cards WHERE id = 1` on every session
  (CONCURRENCY at a time) and prints `checked ok=K masked=M seconds=S`:
  `ok` sessions answered, `masked` of them returned the card number masked
  (`411111******1111`), which only sluice does.
- `close`: closes every session, prints `closed=N seconds=S` and exits.

End of input closes everything too. Any failure prints `error=…` lines and
exits with status 1 after closing what was open. Nothing runs longer than
DEADLINE_S seconds per phase.
"""
import asyncio
import sys
import time

import psycopg

RAW_PAN = "4111111111111111"
MASKED_PAN = "411111******1111"
PROGRESS_EVERY = 500


def say(line):
    print(line, flush=True)


async def open_all(conninfo, n, concurrency, deadline):
    """N open sessions, or an exception naming the first failure."""
    gate = asyncio.Semaphore(concurrency)
    conns = []
    errors = []
    start = time.monotonic()

    async def one(i):
        async with gate:
            if errors:
                return
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append(f"session {i}: {type(e).__name__}: {e}")
                return
            conns.append(conn)
            if len(conns) % PROGRESS_EVERY == 0:
                say(f"progress opened={len(conns)} seconds={time.monotonic() - start:.2f}")

    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), deadline)
    except asyncio.TimeoutError:
        errors.append(f"only {len(conns)} of {n} sessions open after {deadline} s")
    return conns, errors, time.monotonic() - start


async def check_all(conns, concurrency, deadline):
    gate = asyncio.Semaphore(concurrency)
    counts = {"ok": 0, "masked": 0}
    errors = []
    start = time.monotonic()

    async def one(i, conn):
        async with gate:
            try:
                cur = await conn.execute("SELECT pan FROM cards WHERE id = 1")
                (pan,) = await cur.fetchone()
            except Exception as e:  # noqa: BLE001 - every failure is reported
                errors.append(f"session {i}: {type(e).__name__}: {e}")
                return
            counts["ok"] += 1
            if pan == MASKED_PAN:
                counts["masked"] += 1
            elif pan != RAW_PAN:
                errors.append(f"session {i}: unexpected pan {pan!r}")

    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(i, c) for i, c in enumerate(conns))), deadline
        )
    except asyncio.TimeoutError:
        errors.append(f"check incomplete after {deadline} s")
    return counts, errors, time.monotonic() - start


async def close_all(conns, concurrency, deadline):
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(conn):
        async with gate:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    try:
        await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), deadline)
    except asyncio.TimeoutError:
        pass
    return time.monotonic() - start


async def main():
    conninfo, n, concurrency, deadline = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    loop = asyncio.get_running_loop()
    conns, errors, took = await open_all(conninfo, n, concurrency, deadline)
    status = 0
    if errors:
        for e in errors[:10]:
            say(f"error={e}")
        say(f"failed opened={len(conns)} errors={len(errors)}")
        status = 1
    else:
        say(f"ready opened={len(conns)} seconds={took:.2f}")
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            command = line.strip()
            if command == "check":
                counts, errors, took = await check_all(conns, concurrency, deadline)
                for e in errors[:10]:
                    say(f"error={e}")
                say(f"checked ok={counts['ok']} masked={counts['masked']} seconds={took:.2f}")
            elif command == "close" or not line:
                break
            else:
                say(f"error=unknown command {command!r}")
    took = await close_all(conns, concurrency, deadline)
    say(f"closed={len(conns)} seconds={took:.2f}")
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
