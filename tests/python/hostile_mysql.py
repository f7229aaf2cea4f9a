"""PyMySQL as the ordinary and the brute-forcing client of the hostile-client
tests (tests/tests/hostile_clients.rs).

Usage:
  hostile_mysql.py login HOST USER PASSWORD
      One login to HOST:3306, database shop; prints `outcome=ok` or
      `outcome=error` with `code=` and `message=`.
  hostile_mysql.py hold HOST
      Logs in as the lab's agent, prints `ready`, then runs one statement
      per line read from stdin (at most 100 lines, until EOF) and prints
      `result=VALUE` (first column of the first row) or `error=CODE MESSAGE`.
      A line `BIG N` runs a SELECT of a string literal of N bytes.
"""
import sys

import pymysql

AGENT, PASSWORD, DATABASE = "agent", "agent-secret", "shop"


def connect(host, user, password):
    return pymysql.connect(host=host, port=3306, user=user, password=password,
                           database=DATABASE, connect_timeout=5, read_timeout=20,
                           write_timeout=20)


def login(host, user, password):
    try:
        conn = connect(host, user, password)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
        print("outcome=ok", flush=True)
    except pymysql.MySQLError as e:
        code = e.args[0] if e.args else 0
        message = e.args[1] if len(e.args) > 1 else str(e)
        print("outcome=error")
        print(f"code={code}")
        print(f"message={' | '.join(str(message).splitlines())}", flush=True)


def hold(host):
    conn = connect(host, AGENT, PASSWORD)
    print("ready", flush=True)
    for _ in range(100):
        line = sys.stdin.readline()
        if not line:
            break
        sql = line.strip()
        if sql.startswith("BIG "):
            sql = "SELECT '" + "x" * int(sql.split()[1]) + "'"
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
            print(f"result={row[0] if row else ''}", flush=True)
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args else 0
            message = e.args[1] if len(e.args) > 1 else str(e)
            print(f"error={code} {' | '.join(str(message).splitlines())}", flush=True)
    conn.close()


def main():
    mode = sys.argv[1]
    if mode == "login":
        login(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "hold":
        hold(sys.argv[2])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
