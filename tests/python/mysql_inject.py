"""One login through sluice's credential injection, with a real driver.

Usage: mysql_inject.py --driver pymysql|mysqlclient --host H [--port P]
       [--user U] [--password PW] [--db shop] [--tls-ca FILE | --no-tls]

The password (or token) is what the workload holds: with injection sluice
logs in to the database with its own vaulted credential. Prints, in order:
  connect_error=<errno>:<message>   and exits 2 if the login is refused
  current_user=<user@host>          `SELECT CURRENT_USER()` (who the database
                                    authenticated: the upstream user)
  user=<user@host>                  `SELECT USER()` (as the database saw the
                                    login: upstream user, gateway address)
  cards=<n>                         `SELECT count(*) FROM cards`
  database=<name>                   `SELECT DATABASE()` (the one asked for)
  charset=<name>                    `SELECT @@character_set_client`
  tls=<cipher>|none                 `SHOW SESSION STATUS LIKE 'Ssl_cipher'`
                                    (the database leg's TLS)
  after=1                           a second statement on the same session
Exits 2 on any error after the login too, printing `error=<errno>:<message>`.
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from mysql_common import connect, driver_errors, fail, out, parser


def one_value(cur, sql):
    cur.execute(sql)
    row = cur.fetchone()
    return row[-1] if row else None


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    errors = driver_errors(args.driver)
    try:
        conn = connect(args)
    except errors as e:
        fail("connect_error", e)
    try:
        cur = conn.cursor()
        out("current_user", one_value(cur, "SELECT CURRENT_USER()"))
        out("user", one_value(cur, "SELECT USER()"))
        out("cards", one_value(cur, "SELECT count(*) FROM cards"))
        out("database", one_value(cur, "SELECT DATABASE()"))
        out("charset", one_value(cur, "SELECT @@character_set_client"))
        out("tls", one_value(cur, "SHOW SESSION STATUS LIKE 'Ssl_cipher'") or "none")
        out("after", one_value(cur, "SELECT 1"))
        conn.close()
    except errors as e:
        fail("error", e)


if __name__ == "__main__":
    main()
