"""KILL across two sessions: connection A runs `SELECT SLEEP(S)`, connection
B kills A's query (or A's whole connection) by A's server thread id.

Usage: mysql_kill.py [--driver pymysql|mysqlclient] --host H [--port P]
       [--user U] [--password PW] [--db shop] [--tls-ca FILE | --no-tls]
       [--sleep S] [--mode query|connection]

A's id is what `SELECT CONNECTION_ID()` answers on A (through a proxy, the
server's thread id, not anything from the handshake). B waits, bounded,
until the server lists A's SLEEP in the processlist, then sends
`KILL QUERY <id>` (or `KILL CONNECTION <id>` with --mode connection).
Prints:
  a_id=<id>
  a_running=1|0            A's SLEEP was seen in the processlist
  killed_after_ms=<ms>     from B sending KILL until A's statement returned
  a_error=<errno>|none     how A's statement ended (KILL QUERY: 1317
                           "Query execution was interrupted")
  a_result=<value>         A's SLEEP result, when it returned one
  a_after=1                `SELECT 1` on A afterwards worked (KILL QUERY
                           keeps the session), or
  a_after_error=<errno>    it failed (KILL CONNECTION: the session is gone;
                           PyMySQL says 0, Connector/C 2006)
Exits 2 on an unexpected error, 4 if A did not return within S + 5 s.
"""
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import connect, driver_errors, error_code, fail, out, parser


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sleep", type=int, default=20)
    p.add_argument("--mode", choices=["query", "connection"], default="query")
    args = p.parse_args()
    errors = driver_errors(args.driver)
    # A's reads must outlast its SLEEP.
    args.io_timeout = max(args.io_timeout, args.sleep + 10)
    try:
        a = connect(args)
        b = connect(args)
    except errors as e:
        fail("error", e)

    a_cur = a.cursor()
    a_cur.execute("SELECT CONNECTION_ID()")
    a_id = int(a_cur.fetchone()[0])
    out("a_id", a_id)

    result = {}

    def run_a():
        try:
            a_cur.execute(f"SELECT SLEEP({int(args.sleep)})")
            row = a_cur.fetchone()
            result["value"] = None if row is None else row[0]
        except errors as e:
            result["error"] = error_code(e)
        except Exception as e:  # a driver's own socket error, say
            result["error"] = (-1, f"{type(e).__name__}: {e}")
        result["done"] = time.monotonic()

    thread = threading.Thread(target=run_a, daemon=True)
    thread.start()

    b_cur = b.cursor()
    running = 0
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline and "done" not in result:
            b_cur.execute(
                "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (a_id,)
            )
            row = b_cur.fetchone()
            if row and row[0] and "SLEEP" in str(row[0]).upper():
                running = 1
                break
            time.sleep(0.05)
        out("a_running", running)
        what = "QUERY" if args.mode == "query" else "CONNECTION"
        sent = time.monotonic()
        b_cur.execute(f"KILL {what} {a_id}")
    except errors as e:
        fail("error", e)

    thread.join(args.sleep + 5)
    if thread.is_alive():
        out("killed_after_ms", "timeout")
        sys.exit(4)
    out("killed_after_ms", int((result["done"] - sent) * 1000))
    if "error" in result:
        code, _msg = result["error"]
        out("a_error", code)
    else:
        out("a_error", "none")
        out("a_result", result.get("value"))

    try:
        a_cur.execute("SELECT 1")
        out("a_after", a_cur.fetchone()[0])
    except errors as e:
        out("a_after_error", error_code(e)[0])
    except Exception:
        out("a_after_error", -1)
    for conn in (a, b):
        try:
            conn.close()
        except Exception:
            pass


if __name__ == "__main__":
    main()
