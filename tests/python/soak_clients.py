"""The soak's clients (tests/src/soak.rs), psycopg 3, one thread each.

Usage: soak_clients.py CONNINFO CLIENTS SECONDS RATE

Each client paces itself to RATE statements a second and runs, in turn:
reads of its own rows, inserts, an update of its counter, a read of the
card table (whose PANs sluice masks) and, every twentieth statement, a
DROP TABLE that policy refuses. It reconnects every 500 statements, so the
soak opens and closes sessions too. Every 10 s it prints
`progress t=… ok=… denied=… errors=… leaks=… sessions=…`; at the end the
same totals as `key=value` lines. A clear PAN in any answer counts as a
leak; an error other than the expected refusal counts as an error.
"""
import random
import sys
import threading
import time

import psycopg

PANS = ("4111111111111111", "5500005555555559")
REFUSED = "refused by policy"

lock = threading.Lock()
totals = {"ok": 0, "denied": 0, "errors": 0, "leaks": 0, "sessions": 0}
first_errors = []


def add(key, n=1):
    with lock:
        totals[key] += n


def client(conninfo, cid, deadline, rate):
    rng = random.Random(cid)
    step = 1.0 / rate
    due = time.monotonic() + rng.random() * step
    conn = None
    n = 0
    while time.monotonic() < deadline:
        if conn is None or n % 500 == 0:
            if conn is not None:
                conn.close()
            try:
                conn = psycopg.connect(conninfo, autocommit=True)
                add("sessions")
            except psycopg.Error as e:
                add("errors")
                with lock:
                    if len(first_errors) < 5:
                        first_errors.append(f"connect: {e}")
                conn = None
                time.sleep(0.5)
                continue
        n += 1
        kind = n % 20
        try:
            if kind == 0:
                try:
                    conn.execute("DROP TABLE cards")
                    add("errors")
                except psycopg.errors.InsufficientPrivilege as e:
                    if REFUSED in str(e):
                        add("denied")
                    else:
                        raise
            elif kind in (1, 2, 3):
                rows = conn.execute("SELECT holder, pan FROM cards ORDER BY id").fetchall()
                text = repr(rows)
                if any(p in text for p in PANS):
                    add("leaks")
                add("ok")
            elif kind in (4, 5, 6, 7, 8, 9):
                conn.execute(
                    "INSERT INTO soak_items (client, v) VALUES (%s, %s)", (cid, n)
                )
                add("ok")
            elif kind in (10, 11):
                conn.execute(
                    "UPDATE soak_counters SET n = n + 1 WHERE client = %s", (cid,)
                )
                add("ok")
            else:
                conn.execute(
                    "SELECT count(*), max(v) FROM soak_items WHERE client = %s", (cid,)
                ).fetchone()
                add("ok")
        except psycopg.Error as e:
            add("errors")
            with lock:
                if len(first_errors) < 5:
                    first_errors.append(f"{type(e).__name__}: {e}")
            if conn.broken:
                conn = None
                n = 0
        due += step
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            due = time.monotonic()
    if conn is not None:
        conn.close()


def main():
    conninfo, clients, seconds, rate = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
    )
    start = time.monotonic()
    deadline = start + seconds
    threads = [
        threading.Thread(target=client, args=(conninfo, c, deadline, rate), daemon=True)
        for c in range(1, clients + 1)
    ]
    for t in threads:
        t.start()
    next_report = start + 10
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if time.monotonic() >= next_report:
            next_report += 10
            with lock:
                line = " ".join(f"{k}={v}" for k, v in totals.items())
            print(f"progress t={time.monotonic() - start:.0f} {line}", flush=True)
        if time.monotonic() > deadline + 60:
            break
    for k, v in totals.items():
        print(f"{k}={v}")
    print(f"first_errors={' || '.join(first_errors)}", flush=True)


if __name__ == "__main__":
    main()
