"""Server-side prepared statements (the binary protocol) with a real driver.

Usage: mysql_prepared.py --host H [--port P] [--user U] [--password PW]
       [--db shop] [--tls-ca FILE | --no-tls] [--io-timeout S]
       [--id N] [--types-only]

The driver is MySQL Connector/Python in pure-Python mode (its C extension
needs a newer OpenSSL than Debian 12's); `--driver` from the common
arguments is accepted and ignored. `cursor(prepared=True)` sends
COM_STMT_PREPARE, COM_STMT_RESET before each execute, COM_STMT_EXECUTE
with every parameter's type, COM_STMT_SEND_LONG_DATA for file-like
parameters and COM_STMT_CLOSE; results come back as binary rows.

Against the lab's `shop.cards` and `shop.types` (created by the Rust test)
it prints, in order:
  driver=mysql-connector-python-<version>   cext=0
  v_<col>=<repr>          each column of `types` row N, inserted with every
                          parameter type bound and read back with a
                          prepared `SELECT ... WHERE id = %s`
  types_mismatch=<cols>   columns that did not read back as bound (empty)
  pans=, pan_nums=, holders=, amounts=, expires=   a prepared
                          `SELECT id, holder, pan, pan_num, amount, expires
                          FROM cards ORDER BY id` (comma-separated; None
                          for NULL)
  delete_error=<errno>:<message> | none   a prepared `DELETE FROM cards`
  after_error=1           a prepared `SELECT 1` on the same connection
  long_data=<bytes>:<md5 ok 0|1>   a BLOB sent with COM_STMT_SEND_LONG_DATA
                          (a file-like parameter) and read back
  repeat=<h1>,<h2>        one prepared `SELECT holder FROM cards WHERE id =
                          %s`, executed for 1 then 2
  pan_param=1             `SELECT %s IS NOT NULL` with a card number bound
                          (so the audit record must mask a parameter)
  binary_param=<n>        `SELECT LENGTH(%s)` with bytes that are not text
  cursor_pans=<p1>,<p2>   a read-only cursor (CURSOR_TYPE_READ_ONLY) on
                          `SELECT id, pan FROM cards ORDER BY id`, one
                          COM_STMT_FETCH per row
With `--types-only` it stops after the types (a run straight to the
database, for comparison). Exits 2 on any unexpected error, printing
`error=<errno>:<message>`.
"""
import datetime
import hashlib
import io
import sys
from decimal import Decimal

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import CONNECT_TIMEOUT, out, parser

COLUMNS = [
    "c_tiny", "c_small", "c_medium", "c_int", "c_big", "c_ubig", "c_float",
    "c_double", "c_decimal", "c_date", "c_time", "c_datetime", "c_timestamp",
    "c_year", "c_char", "c_varchar", "c_text", "c_blob", "c_varbinary",
    "c_enum", "c_set", "c_json", "c_bit", "c_null", "c_bool",
]

# One value of every kind the driver binds: None, ints (negative, large
# unsigned), float, Decimal, str with non-ASCII text, bytes, date,
# timedelta, datetime with microseconds, bool. (The largest unsigned
# bigint, 18446744073709551615, holds a Luhn-valid 15-digit window, which
# sluice's PAN detector masks by design; 2**63 holds none.)
VALUES = {
    "c_tiny": -128,
    "c_small": 32767,
    "c_medium": -8388608,
    "c_int": 2147483647,
    "c_big": -9223372036854775808,
    "c_ubig": 9223372036854775808,  # 2**63: only an unsigned bigint holds it
    "c_float": 1.5,
    "c_double": -2.5e-07,
    "c_decimal": Decimal("-123456789.125"),
    "c_date": datetime.date(2024, 2, 29),
    "c_time": datetime.timedelta(days=1, hours=6, minutes=3, seconds=4),
    "c_datetime": datetime.datetime(2024, 2, 29, 1, 2, 3, 123456),
    "c_timestamp": datetime.datetime(2024, 2, 29, 23, 59, 58),
    "c_year": 2024,
    "c_char": "ünï",
    "c_varchar": "O'Reilly \"€\" \\ ✓",
    "c_text": "línea 1\nline 2\ttab 🐬",
    "c_blob": bytes(range(256)),
    "c_varbinary": b"\x00\xff\x10",
    "c_enum": "b",
    "c_set": "x,y",
    "c_json": '{"k": [1, 2, "ü"]}',
    "c_bit": b"\xa5",
    "c_null": None,
    "c_bool": True,
}

PAN = "4111111111111111"


def driver_version():
    from importlib.metadata import version

    return f"mysql-connector-python-{version('mysql-connector-python')}"


def connect(args):
    import mysql.connector

    kw = {}
    if args.tls_ca:
        kw.update(ssl_ca=args.tls_ca, ssl_verify_cert=True, ssl_verify_identity=True)
    elif args.no_tls:
        kw["ssl_disabled"] = True
    return mysql.connector.connect(
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
        # Its default for MariaDB is utf8mb3, which cannot hold emoji.
        charset="utf8mb4",
        collation="utf8mb4_general_ci",
        **kw,
    )


def same(col, got):
    """Whether `got` is what binding VALUES[col] should read back as."""
    want = VALUES[col]
    if col == "c_bool":
        return got == 1
    if col == "c_set":
        return got in ("x,y", {"x", "y"})
    return got == want and type(got) is type(want)


def year_as_short(cur):
    """The driver (26.10, pure mode) reads a binary YEAR value as a
    length-prefixed string, which it is not: the protocol sends YEAR as a
    2-byte integer (straight to the database too, the row then fails to
    parse). Have it read YEAR columns as the SMALLINT they are sent as."""
    from mysql.connector.constants import FieldType

    cur._description = [
        (d[0], FieldType.SHORT, *d[2:]) if d[1] == FieldType.YEAR else d
        for d in cur._description
    ]


def types(conn, args):
    cur = conn.cursor(prepared=True)
    cols = ", ".join(COLUMNS)
    marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
    cur.execute(
        f"INSERT INTO types (id, {cols}) VALUES ({marks})",
        [args.id] + [VALUES[c] for c in COLUMNS],
    )
    out("types_inserted", cur.rowcount)
    cur.execute(f"SELECT {cols} FROM types WHERE id = %s", (args.id,))
    year_as_short(cur)
    row = cur.fetchone()
    if cur.fetchone() is not None:
        raise RuntimeError("more than one row")
    mismatch = []
    for col, value in zip(COLUMNS, row):
        out(f"v_{col}", repr(value))
        if not same(col, value):
            mismatch.append(col)
    out("types_mismatch", ",".join(mismatch))
    cur.close()


def column(rows, i):
    return ",".join("None" if r[i] is None else str(r[i]) for r in rows)


def cards(conn):
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT id, holder, pan, pan_num, amount, expires FROM cards ORDER BY id")
    rows = cur.fetchall()
    out("holders", column(rows, 1))
    out("pans", column(rows, 2))
    out("pan_nums", column(rows, 3))
    out("amounts", column(rows, 4))
    out("expires", column(rows, 5))
    cur.close()


def refusal(conn, errors):
    cur = conn.cursor(prepared=True)
    try:
        cur.execute("DELETE FROM cards")
        out("delete_error", "none")
    except errors as e:
        out("delete_error", f"{e.errno}:{e.msg}")
    cur.close()
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT 1")
    out("after_error", cur.fetchone()[0])
    cur.close()


def long_data(conn, args):
    # 300 000 bytes: three COM_STMT_SEND_LONG_DATA packets (128 KiB each).
    blob = bytes((i * 7) % 251 for i in range(300_000))
    cur = conn.cursor(prepared=True)
    cur.execute("UPDATE types SET c_long = %s WHERE id = %s", (io.BytesIO(blob), args.id))
    cur.execute("SELECT LENGTH(c_long), MD5(c_long) FROM types WHERE id = %s", (args.id,))
    length, md5 = cur.fetchone()
    ok = int(md5 == hashlib.md5(blob).hexdigest())
    out("long_data", f"{length}:{ok}")
    cur.close()


def repeat(conn):
    cur = conn.cursor(prepared=True)
    sql = "SELECT holder FROM cards WHERE id = %s"
    got = []
    # The same string object: the driver prepares once, executes twice.
    for id_ in (1, 2):
        cur.execute(sql, (id_,))
        got.append(str(cur.fetchone()[0]))
    out("repeat", ",".join(got))
    cur.close()


def parameters(conn):
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT %s IS NOT NULL", (PAN,))
    out("pan_param", cur.fetchone()[0])
    cur.execute("SELECT LENGTH(%s)", (b"\xff\x00" + PAN.encode(),))
    out("binary_param", cur.fetchone()[0])
    cur.close()


def read_only_cursor(conn, args):
    """A cursor opened by COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY and
    read with COM_STMT_FETCH, one row at a time. The driver's prepared
    cursor never asks for one, so this drives its connection's commands
    and row parser directly."""
    stmt = conn.cmd_stmt_prepare(b"SELECT id, pan FROM cards ORDER BY id")
    result = conn.cmd_stmt_execute(
        stmt["statement_id"], parameters=stmt["parameters"], flags=1
    )
    _count, columns, eof = result
    if not eof["status_flag"] & 0x40:  # SERVER_STATUS_CURSOR_EXISTS
        raise RuntimeError(f"no cursor opened: {eof}")
    pans = []
    for _ in range(10):
        conn.cmd_stmt_fetch(stmt["statement_id"], 1)
        done = False
        while True:
            packet = bytes(conn._socket.recv(args.io_timeout))
            if packet[4] == 0xFE and len(packet) < 13:
                status = int.from_bytes(packet[7:9], "little")
                done = bool(status & 0x80)  # SERVER_STATUS_LAST_ROW_SENT
                break
            if packet[4] == 0xFF:
                raise RuntimeError(f"fetch failed: {packet[5:]!r}")
            row = conn._protocol._parse_binary_values(columns, packet[5:])
            pans.append(row[1])
        if done:
            break
    conn.unread_result = False
    conn.cmd_stmt_close(stmt["statement_id"])
    out("cursor_pans", ",".join(str(p) for p in pans))


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--id", type=int, default=1, help="the id of the row in `types`")
    p.add_argument("--types-only", action="store_true")
    args = p.parse_args()
    import mysql.connector

    errors = mysql.connector.Error
    out("driver", driver_version())
    try:
        conn = connect(args)
    except errors as e:
        out("error", f"{e.errno}:{e.msg}")
        sys.exit(2)
    out("cext", int(type(conn).__name__ == "CMySQLConnection"))
    try:
        types(conn, args)
        if not args.types_only:
            cards(conn)
            refusal(conn, errors)
            long_data(conn, args)
            repeat(conn)
            parameters(conn)
            read_only_cursor(conn, args)
    except errors as e:
        out("error", f"{e.errno}:{e.msg}")
        sys.exit(2)
    except Exception as e:  # a driver or protocol failure, not the server's
        out("error", f"-1:{type(e).__name__}: {e}")
        sys.exit(2)
    finally:
        try:
            conn.close()
        except Exception:
            pass


if __name__ == "__main__":
    main()
