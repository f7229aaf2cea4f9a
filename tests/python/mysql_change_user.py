"""COM_CHANGE_USER with real drivers: mysqlclient's `change_user()` (MariaDB
Connector/C) and MySQL Connector/Python's `cmd_change_user()` (pure mode).

Usage: mysql_change_user.py --host H [--user U] [--password PW] [--db shop]
       --other USER --other-password PW [--inject]

Against the lab's `shop.cards`, as `--user` then `--other`, it prints, in
order (a value is `ok`, a result, or `<errno>:<message>`):
  user_before=<CURRENT_USER()>
  write_before=...        UPDATE notes SET body = CONCAT(body, '.') WHERE id = 1
  bad_change=...          change_user(other, wrong password, db)
  user_after_bad=...      CURRENT_USER() on the same connection
  change=...              change_user(other, its password, db)
  user_after=...
  write_after=...         the same UPDATE, now as the other user
  read_after=<pan>        SELECT pan FROM cards WHERE id = 1
  change_back=...         change_user(user, password, db)
  write_back=...
  cp_before=<holder>      Connector/Python: a prepared SELECT, executed
  cp_change=...           cmd_change_user(other, its password, db)
  cp_stale=...            the statement prepared before, executed again
  cp_fresh=<holder>       a statement prepared after the change
With `--inject` (credential injection: the password is anything) it prints
only `user_before`, `change` (the change to --other) and `after=<SELECT
1>` (the session still usable). Exits 2 on an unexpected error, printing
`error=<errno>:<message>`.
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import CONNECT_TIMEOUT, connect, error_code, out, parser

UPDATE = "UPDATE notes SET body = CONCAT(body, '.') WHERE id = 1"


def attempt(key, f):
    """Print `key=<f()>`, or the driver's error as `<errno>:<message>`."""
    try:
        value = f()
    except Exception as e:  # noqa: BLE001 - the driver's errors are the output
        code, msg = error_code(e)
        out(key, f"{code}:{msg}")
        return
    out(key, "ok" if value is None else value)


def one(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return None if row is None else row[0]


def run(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    cur.close()


def mysqlclient(args):
    # mysqlclient over plain TCP, whatever the command line said.
    args.driver, args.tls_ca, args.no_tls = "mysqlclient", None, True
    conn = connect(args)
    out("user_before", one(conn, "SELECT CURRENT_USER()"))
    if args.inject:
        attempt("change", lambda: conn.change_user(args.other, args.other_password, args.db))
        attempt("after", lambda: one(conn, "SELECT 1"))
        conn.close()
        return
    attempt("write_before", lambda: run(conn, UPDATE))
    attempt("bad_change", lambda: conn.change_user(args.other, "not-the-password", args.db))
    attempt("user_after_bad", lambda: one(conn, "SELECT CURRENT_USER()"))
    attempt("change", lambda: conn.change_user(args.other, args.other_password, args.db))
    attempt("user_after", lambda: one(conn, "SELECT CURRENT_USER()"))
    attempt("write_after", lambda: run(conn, UPDATE))
    attempt("read_after", lambda: one(conn, "SELECT pan FROM cards WHERE id = 1"))
    attempt("change_back", lambda: conn.change_user(args.user, args.password, args.db))
    attempt("write_back", lambda: run(conn, UPDATE))
    conn.close()


def connector_python(args):
    import mysql.connector

    conn = mysql.connector.connect(
        host=args.host,
        port=args.port,
        user=args.user,
        password=args.password,
        database=args.db,
        connection_timeout=CONNECT_TIMEOUT,
        read_timeout=args.io_timeout,
        write_timeout=args.io_timeout,
        autocommit=True,
        use_pure=True,
        ssl_disabled=True,
        charset="utf8mb4",
        collation="utf8mb4_general_ci",
    )
    sql = "SELECT id FROM cards WHERE id = %s"
    old = conn.cursor(prepared=True)

    def execute(cur):
        cur.execute(sql, (1,))
        return cur.fetchone()[0]

    attempt("cp_before", lambda: execute(old))
    attempt(
        "cp_change",
        lambda: (
            conn.cmd_change_user(
                username=args.other, password=args.other_password, database=args.db
            ),
            None,
        )[1],
    )
    attempt("cp_stale", lambda: execute(old))
    attempt("cp_fresh", lambda: execute(conn.cursor(prepared=True)))
    conn.close()


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--other", required=True)
    p.add_argument("--other-password", required=True)
    p.add_argument("--inject", action="store_true")
    args = p.parse_args()
    try:
        mysqlclient(args)
        if not args.inject:
            connector_python(args)
    except Exception as e:  # noqa: BLE001
        code, msg = error_code(e)
        out("error", f"{code}:{msg}")
        sys.exit(2)


if __name__ == "__main__":
    main()
