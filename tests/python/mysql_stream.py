"""Stream a large MySQL result with an unbuffered cursor (the driver's
SSCursor), row by row as the server sends it, and report the client's peak
memory: the constant-memory test compares it with the proxy's.

Usage: mysql_stream.py --rows N [--driver pymysql|mysqlclient] --host H
       [--port P] [--user U] [--password PW] [--db shop] [--tls-ca FILE | --no-tls]
       [--announce K]

Selects `seq, CONCAT('row-', seq) FROM seq_1_to_N` (MariaDB's Sequence
engine). With --announce, prints `progress=K` once K rows have arrived (a
test can kill the client then). At the end prints `connection_id=` (first,
before the query), `rows=`, `sum=` (of seq), `in_order=1|0`, `elapsed_ms=`
and `max_rss_kb=` (resource.getrusage, this process). Exits 2 on an error.
"""
import resource
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import connect, driver_errors, fail, out, parser, ss_cursor_class


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--announce", type=int)
    args = p.parse_args()
    if args.rows < 1:
        p.error("--rows must be at least 1")
    errors = driver_errors(args.driver)
    try:
        conn = connect(args, cursorclass=ss_cursor_class(args.driver))
    except errors as e:
        fail("error", e)
    rows = total = 0
    in_order = 1
    started = time.monotonic()
    try:
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        out("connection_id", cur.fetchone()[0])
        cur.close()
        cur = conn.cursor()
        # The table name carries N: the Sequence engine has no parameters.
        cur.execute(f"SELECT seq, CONCAT('row-', seq) FROM seq_1_to_{int(args.rows)}")
        for seq, text in cur:
            rows += 1
            total += seq
            if seq != rows or text != f"row-{seq}":
                in_order = 0
            if rows == args.announce:
                out("progress", rows)
        cur.close()
    except errors as e:
        out("rows", rows)
        fail("error", e)
    finally:
        try:
            conn.close()
        except Exception:
            pass
    out("rows", rows)
    out("sum", total)
    out("in_order", in_order)
    out("elapsed_ms", int((time.monotonic() - started) * 1000))
    out("max_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
