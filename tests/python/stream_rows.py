"""Stream a large result through sluice without holding it anywhere:
psycopg's `cursor.stream` reads it row by row as the server sends it.

Usage: stream_rows.py CONNINFO ROWS WIDTH [ANNOUNCE]
Selects `g, repeat('x', WIDTH)` for g in 1..ROWS. Prints `backend_pid=N`
first; with ANNOUNCE, prints `progress=ANNOUNCE` once that many rows have
arrived (the test kills the client then); at the end prints `rows=`, `sum=`
(of g) and `chars=` (of the text column).
"""
import sys

import psycopg


def main():
    conninfo, n, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    announce = int(sys.argv[4]) if len(sys.argv) > 4 else None
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # Not conn.info.backend_pid: sluice hands clients a synthetic
        # BackendKeyData (for cancel routing), so ask the server.
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        print(f"backend_pid={pid}", flush=True)
        rows = total = chars = 0
        with conn.cursor() as cur:
            for g, text in cur.stream(
                "select g, repeat('x', %s) from generate_series(1, %s) g", [width, n]
            ):
                rows += 1
                total += g
                chars += len(text)
                if rows == announce:
                    print(f"progress={rows}", flush=True)
        print(f"rows={rows}", flush=True)
        print(f"sum={total}", flush=True)
        print(f"chars={chars}", flush=True)


if __name__ == "__main__":
    main()
