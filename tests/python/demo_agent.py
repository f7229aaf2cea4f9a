"""The demo's legacy agent: a plain psycopg2 script that reads the cards
table and, when asked, applies its schema migration. It dials the database
address it has always used; nothing in it knows sluice exists.

usage: demo_agent.py read|migrate DSN
"""
import sys
import time

import psycopg2


def main() -> int:
    mode, dsn = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    if mode == "read":
        cur.execute("SELECT id, holder, pan, expires FROM cards ORDER BY id")
        for row in cur.fetchall():
            print(" | ".join(str(v) for v in row))
        return 0
    if mode == "migrate":
        started = time.monotonic()
        try:
            cur.execute("ALTER TABLE cards ADD COLUMN last_reviewed date")
        except psycopg2.Error as e:
            print(f"migration refused after {time.monotonic() - started:.1f} s: {e.pgerror}")
            return 2
        print(f"migration applied after {time.monotonic() - started:.1f} s")
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
