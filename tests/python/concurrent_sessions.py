"""Many sessions through sluice at the same moment, one thread each.

Usage: concurrent_sessions.py CONNINFO SESSIONS
Every thread connects, then waits at a barrier until all are connected, so
SESSIONS sessions are open at once. Each then runs a parameterised query, a
query on `cards`, a DELETE without WHERE that the policy refuses (42501,
session stays usable), and counts the sessions the server sees with this
run's application_name; a second barrier keeps every session open until all
have counted. Prints `ok=`, `failed=`, `distinct_backends=`, `min_seen=`,
`refusals=` and one `error=` line per failure.
"""
import sys
import threading

import psycopg

APP = "sluice-concurrent"


def main():
    conninfo, n = sys.argv[1], int(sys.argv[2])
    connected = threading.Barrier(n, timeout=60)
    counted = threading.Barrier(n, timeout=60)
    lock = threading.Lock()
    results = {"ok": 0, "errors": [], "pids": set(), "seen": [], "refusals": 0}

    def session(i):
        try:
            with psycopg.connect(conninfo, application_name=APP, autocommit=True) as conn:
                connected.wait()
                pid, doubled = conn.execute(
                    "select pg_backend_pid(), %s::int * 2", [i]
                ).fetchone()
                assert doubled == 2 * i, (doubled, i)
                cards = conn.execute("select count(*) from cards").fetchone()[0]
                assert cards == 2, cards
                try:
                    conn.execute("delete from cards")
                    raise AssertionError("DELETE without WHERE was not refused")
                except psycopg.errors.InsufficientPrivilege as e:
                    assert e.diag.message_primary == "sluice: statement refused by policy", e
                seen = conn.execute(
                    "select count(*) from pg_stat_activity where application_name = %s",
                    [APP],
                ).fetchone()[0]
                counted.wait()
                assert conn.execute("select %s::text", [f"s{i}"]).fetchone()[0] == f"s{i}"
            with lock:
                results["ok"] += 1
                results["pids"].add(pid)
                results["seen"].append(seen)
                results["refusals"] += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            with lock:
                results["errors"].append(f"session {i}: {type(e).__name__}: {e}")
            # Release the others rather than leave them waiting for us.
            connected.abort()
            counted.abort()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    print(f"ok={results['ok']}")
    print(f"failed={len(results['errors'])}")
    print(f"distinct_backends={len(results['pids'])}")
    print(f"min_seen={min(results['seen'], default=0)}")
    print(f"refusals={results['refusals']}")
    for e in results["errors"]:
        print(f"error={e}")


if __name__ == "__main__":
    main()
