"""One MySQL session with a real driver: what an agent's code does.

Usage: mysql_clients.py --driver pymysql|mysqlclient --host H [--port P]
       [--user U] [--password PW] [--db shop] [--tls-ca FILE | --no-tls]
       [--expect-masked] [--delete-in-transaction]

Against the lab's `shop.cards` (MariaDb fixture, tests/src/mariadb.rs) it
prints, in order:
  driver=<name>            the driver and its version, e.g. pymysql-1.2.4
  version=<server version> from the handshake
  pans=<p1>,<p2>           `pan` of `SELECT id, holder, pan FROM cards ORDER BY id`
  masked=0|1               1 if no pan is a whole Luhn-valid card number
  delete_error=<errno>:<message> | none   for `DELETE FROM cards` (no WHERE)
  deleted=<rows>           only when the DELETE ran
  after_error=1            `SELECT 1` on the same session afterwards
  multi=1,2                `SELECT 1; SELECT 2` with CLIENT_MULTI_STATEMENTS
  param_holder=<holder>    `SELECT holder FROM cards WHERE id = %s` with 1
                           (both drivers interpolate on the client)
  tls=<cipher>|none        from `SHOW SESSION STATUS LIKE 'Ssl_cipher'`

`--delete-in-transaction` runs the DELETE between BEGIN and ROLLBACK, so a
run straight to the database (where nothing refuses it) leaves the table
as it was; without it the DELETE runs in autocommit, as an agent's would.
With `--expect-masked` the script fails (exit 3) unless masked=1. Exits 2
on any other unexpected error, printing `error=<errno>:<message>`.
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import connect, driver_errors, error_code, fail, out, parser


def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def clear_pan(value):
    """A whole card number in the clear: 13-19 digits passing Luhn."""
    s = str(value) if value is not None else ""
    return s.isdigit() and 13 <= len(s) <= 19 and luhn_ok(s)


def driver_version(driver):
    from importlib.metadata import version

    return f"{driver}-{version('PyMySQL' if driver == 'pymysql' else 'mysqlclient')}"


def one_value(cur, sql, params=None):
    cur.execute(sql, params)
    row = cur.fetchone()
    return None if row is None else row[0]


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--expect-masked", action="store_true")
    p.add_argument("--delete-in-transaction", action="store_true")
    args = p.parse_args()
    errors = driver_errors(args.driver)
    out("driver", driver_version(args.driver))
    try:
        conn = connect(args, multi_statements=True)
    except errors as e:
        fail("error", e)
    try:
        out("version", conn.get_server_info())
        cur = conn.cursor()

        cur.execute("SELECT id, holder, pan FROM cards ORDER BY id")
        pans = [row[2] for row in cur.fetchall()]
        out("pans", ",".join("" if v is None else str(v) for v in pans))
        masked = int(bool(pans) and not any(clear_pan(v) for v in pans))
        out("masked", masked)

        if args.delete_in_transaction:
            cur.execute("BEGIN")
        try:
            cur.execute("DELETE FROM cards")
            out("delete_error", "none")
            out("deleted", cur.rowcount)
        except errors as e:
            code, msg = error_code(e)
            out("delete_error", f"{code}:{msg}")
        if args.delete_in_transaction:
            cur.execute("ROLLBACK")

        out("after_error", one_value(cur, "SELECT 1"))

        cur.execute("SELECT 1; SELECT 2")
        results = []
        for _ in range(10):
            rows = cur.fetchall()
            results.extend(str(r[0]) for r in rows)
            if not cur.nextset():
                break
        out("multi", ",".join(results))

        out("param_holder", one_value(cur, "SELECT holder FROM cards WHERE id = %s", (1,)))

        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
        out("tls", (row[1] if row and row[1] else "none"))
        cur.close()
    except errors as e:
        fail("error", e)
    finally:
        try:
            conn.close()
        except Exception:
            pass
    if args.expect_masked and not masked:
        sys.exit(3)


if __name__ == "__main__":
    main()
