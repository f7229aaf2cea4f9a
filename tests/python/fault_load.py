"""Clients for the fault-injection tests (tests/tests/faults.rs), psycopg 3.

Usage:
  fault_load.py writes CONNINFO CLIENT SECONDS
      Until SECONDS pass: connect (reconnecting after any error, 50 ms
      apart) and run `INSERT INTO fault_writes VALUES (CLIENT, n)` and
      `SELECT count(*) FROM fault_writes WHERE client = CLIENT` in turn.
      Every statement text is unique. Prints `acked=CLIENT:n` for each
      insert the server confirmed, then `acked_total=`, `errors=`,
      `connects=`, `first_error=`, `last_error=`.
  fault_load.py stall CONNINFO GO_FILE SQL
      Sends SQL and reads nothing until GO_FILE exists (at most 120 s),
      then closes the connection. Prints `backend_pid=`, `sent`, `closed`.
  fault_load.py trickle CONNINFO SQL
      Streams SQL's rows (single-row mode) and prints `rows=`,
      `first_row=` and `last_row=` (seconds after the query was sent).
"""
import os
import sys
import time

import psycopg


def writes(conninfo, client, seconds):
    deadline = time.monotonic() + seconds
    n = 0
    acked = errors = connects = 0
    first_error = last_error = ""
    conn = None
    while time.monotonic() < deadline:
        try:
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(conninfo, autocommit=True)
                connects += 1
            n += 1
            conn.execute(f"INSERT INTO fault_writes VALUES ({client}, {n})")
            print(f"acked={client}:{n}", flush=True)
            acked += 1
            conn.execute(
                f"SELECT count(*) FROM fault_writes WHERE client = {client} AND n <= {n}"
            ).fetchone()
        except psycopg.Error as e:
            errors += 1
            what = f"{type(e).__name__} {getattr(e.diag, 'sqlstate', None)} {' | '.join(str(e).splitlines())}"
            if not first_error:
                first_error = what
            last_error = what
            try:
                if conn is not None:
                    conn.close()
            except psycopg.Error:
                pass
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()
    print(f"acked_total={acked}")
    print(f"errors={errors}")
    print(f"connects={connects}")
    print(f"first_error={first_error}")
    print(f"last_error={last_error}", flush=True)


def stall(conninfo, go_file, sql):
    conn = psycopg.connect(conninfo, autocommit=True)
    print(f"backend_pid={conn.execute('select pg_backend_pid()').fetchone()[0]}", flush=True)
    conn.pgconn.send_query(sql.encode())
    print("sent", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    conn.pgconn.finish()
    print("closed", flush=True)


def trickle(conninfo, sql):
    conn = psycopg.connect(conninfo, autocommit=True)
    cur = conn.cursor()
    started = time.monotonic()
    first = last = None
    rows = 0
    for _ in cur.stream(sql):
        now = time.monotonic() - started
        if first is None:
            first = now
        last = now
        rows += 1
    print(f"rows={rows}")
    print(f"first_row={first:.3f}")
    print(f"last_row={last:.3f}", flush=True)
    conn.close()


def main():
    mode = sys.argv[1]
    if mode == "writes":
        writes(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "stall":
        stall(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "trickle":
        trickle(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
