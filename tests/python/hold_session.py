"""Hold a session open across a database restart and report what the
client sees.

Usage: hold_session.py CONNINFO MODE GO_FILE
Connects, prints `backend_pid=N` and `ready`. MODE `idle`: waits (at most
60 s) for GO_FILE to exist, then runs a query. MODE `busy`: runs
`select pg_sleep(60)` at once, so the restart lands mid-statement. Prints
`outcome=result` or `outcome=error` with `error_type=`, `sqlstate=`,
`message=`, then `elapsed=` (seconds the statement took) and `broken=`.
"""
import os
import sys
import time

import psycopg


def main():
    conninfo, mode, go_file = sys.argv[1], sys.argv[2], sys.argv[3]
    conn = psycopg.connect(conninfo, autocommit=True)
    print(f"backend_pid={conn.execute('select pg_backend_pid()').fetchone()[0]}", flush=True)
    print("ready", flush=True)
    if mode == "idle":
        deadline = time.monotonic() + 60
        while not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        query = "select 'after restart'"
    else:
        query = "select pg_sleep(60)"
    started = time.monotonic()
    try:
        conn.execute(query).fetchone()
        print("outcome=result", flush=True)
    except psycopg.Error as e:
        print("outcome=error")
        print(f"error_type={type(e).__name__}")
        print(f"sqlstate={e.diag.sqlstate}")
        print(f"message={' | '.join(str(e).splitlines())}")
    print(f"elapsed={time.monotonic() - started:.2f}")
    print(f"broken={conn.broken}", flush=True)
    conn.close()


if __name__ == "__main__":
    main()
