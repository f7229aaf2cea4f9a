"""What the MySQL client scripts (`mysql_*.py`) share: the connection
arguments, a connect() for both drivers with every socket operation under a
timeout, and the `key=value` output the Rust tests parse.

Drivers: `pymysql` (PyMySQL, pure Python) and `mysqlclient` (MySQLdb, a C
extension over MariaDB Connector/C 3.3). TLS:
  --tls-ca FILE   required; the server certificate must chain to FILE and
                  name the host dialled (an IP SAN for the lab's addresses).
  --no-tls        never (pymysql `ssl_disabled`, mysqlclient `ssl_mode`
                  DISABLED).
  neither         the driver's default: PyMySQL 1.2 tries TLS whenever the
                  server offers it, without verifying anything ("preferred");
                  mysqlclient over Connector/C 3.3 stays in plaintext.
"""
import argparse
import sys

CONNECT_TIMEOUT = 5
IO_TIMEOUT = 30


def out(key, value):
    print(f"{key}={value}", flush=True)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--driver", choices=["pymysql", "mysqlclient"], default="pymysql")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="agent")
    p.add_argument("--password", default="agent-secret")
    p.add_argument("--db", default="shop")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls-ca", help="CA file: require TLS and verify the server against it")
    tls.add_argument("--no-tls", action="store_true", help="never use TLS")
    p.add_argument(
        "--io-timeout",
        type=int,
        default=IO_TIMEOUT,
        help="seconds any one read or write on the socket may take",
    )
    return p


def error_code(err):
    """(errno, message) of a driver error; (-1, text) if it has none."""
    args = getattr(err, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return -1, str(err)


def connect(args, multi_statements=False, cursorclass=None):
    """A connection with autocommit on."""
    if args.driver == "pymysql":
        import pymysql
        from pymysql.constants import CLIENT

        kw = {}
        if args.tls_ca:
            kw.update(ssl_ca=args.tls_ca, ssl_verify_cert=True, ssl_verify_identity=True)
        elif args.no_tls:
            kw["ssl_disabled"] = True
        if cursorclass is not None:
            kw["cursorclass"] = cursorclass
        return pymysql.connect(
            host=args.host,
            port=args.port,
            user=args.user,
            password=args.password,
            database=args.db,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=args.io_timeout,
            write_timeout=args.io_timeout,
            client_flag=CLIENT.MULTI_STATEMENTS if multi_statements else 0,
            autocommit=True,
            **kw,
        )
    import MySQLdb
    from MySQLdb.constants import CLIENT

    kw = {}
    if args.tls_ca:
        # Connector/C: a CA turns TLS on; VERIFY_IDENTITY makes it required
        # and checks the certificate's chain and name.
        kw.update(ssl={"ca": args.tls_ca}, ssl_mode="VERIFY_IDENTITY")
    elif args.no_tls:
        kw["ssl_mode"] = "DISABLED"
    if cursorclass is not None:
        kw["cursorclass"] = cursorclass
    return MySQLdb.connect(
        host=args.host,
        port=args.port,
        user=args.user,
        password=args.password,
        database=args.db,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=args.io_timeout,
        write_timeout=args.io_timeout,
        client_flag=CLIENT.MULTI_STATEMENTS if multi_statements else 0,
        autocommit=True,
        **kw,
    )


def ss_cursor_class(driver):
    """The driver's unbuffered (streaming) cursor."""
    if driver == "pymysql":
        import pymysql.cursors

        return pymysql.cursors.SSCursor
    import MySQLdb.cursors

    return MySQLdb.cursors.SSCursor


def driver_errors(driver):
    """The driver's base error class (everything it raises for the server)."""
    if driver == "pymysql":
        import pymysql

        return pymysql.err.MySQLError
    import MySQLdb

    return MySQLdb.MySQLError


def fail(key, err):
    code, msg = error_code(err)
    out(key, f"{code}:{msg}")
    sys.exit(2)
