"""psycopg 3 features through sluice: a server-side cursor fetched in batches,
COPY both ways (text and binary, and a COPY the client abandons), pipeline
mode with a statement the policy refuses in the middle, executemany, and
binary results.

Usage: psycopg_features.py CONNINFO
The lab's superuser has created `items (id int primary key, label text)`,
empty and writable by the agent role. Prints `key=value` lines, which the
Rust test (tests/tests/pg_clients.rs) asserts on; exits non-zero on an
unexpected exception.
"""
import sys

import psycopg

REFUSED = "sluice: statement refused by policy"


def out(key, value):
    print(f"{key}={value}", flush=True)


def error_fields(prefix, err):
    out(f"{prefix}_type", type(err).__name__)
    out(f"{prefix}_sqlstate", err.diag.sqlstate)
    out(f"{prefix}_message", err.diag.message_primary)


def server_side_cursor(conn):
    # Named cursors live inside a transaction (the connection is not in
    # autocommit here): DECLARE, then FETCH FORWARD 1000 per fetchmany.
    rows = batches = total = 0
    open_cursors = None
    with conn.cursor(name="sluice_batches") as cur:
        cur.execute("select g, md5(g::text) from generate_series(1, 50000) g")
        for _ in range(1000):
            batch = cur.fetchmany(1000)
            if not batch:
                break
            batches += 1
            rows += len(batch)
            total += sum(r[0] for r in batch)
            if open_cursors is None:
                # Mid-iteration the rest of the result is still on the server.
                open_cursors = conn.execute(
                    "select count(*) from pg_cursors where name = 'sluice_batches'"
                ).fetchone()[0]
    conn.commit()
    out("named_rows", rows)
    out("named_batches", batches)
    out("named_sum", total)
    out("named_open_cursors", open_cursors)


def copy_both_ways(conn):
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, label) FROM STDIN") as copy:
            for i in range(1, 20001):
                copy.write_row((i, f"label-{i}"))
        out("copy_in_text", cur.rowcount)
        with cur.copy("COPY items (id, label) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            for i in range(20001, 21001):
                copy.write_row((i, f"binary-{i}"))
        out("copy_in_binary", cur.rowcount)
        # A COPY the client abandons: psycopg sends CopyFail, the server
        # answers with an error, and nothing of it is kept.
        try:
            with cur.copy("COPY items (id, label) FROM STDIN") as copy:
                copy.write_row((999999, "abandoned"))
                raise RuntimeError("client gives up")
        except Exception as e:  # noqa: BLE001 - which one psycopg raises is reported
            out("copy_fail_type", type(e).__name__)
        out("after_copy_fail_count", conn.execute("select count(*) from items").fetchone()[0])

        rows = total = 0
        last = None
        with cur.copy(
            "COPY (select id, label from items order by id) TO STDOUT (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "text"])
            for row in copy.rows():
                rows += 1
                total += row[0]
                last = row
        out("copy_out_binary_rows", rows)
        out("copy_out_binary_sum", total)
        out("copy_out_binary_last", last[1])
        data = bytearray()
        with cur.copy("COPY items TO STDOUT") as copy:
            for block in copy:
                data += block
        out("copy_out_text_lines", data.count(b"\n"))
        out("copy_out_text_bytes", len(data))


def pipelines(conn):
    # One sync block: a statement, an insert, the refused DROP, another
    # statement. The refusal must land exactly on the DROP; the insert before
    # it rolls back with the block's implicit transaction and the statement
    # after it is skipped, as after any error. A later block runs normally.
    # psycopg reads results as soon as they arrive, so the refusal surfaces
    # at whichever call processes it: the execute after the DROP or the
    # sync. Either way 'c' must never produce a result.
    with conn.pipeline() as p:
        a = conn.execute("select 'a'")
        c = None
        try:
            conn.execute("insert into items values (%s, %s)", [900001, "pipelined"])
            conn.execute("drop table items")
            c = conn.execute("select 'c'")
            p.sync()
            out("pipe_error_type", "none")
        except psycopg.Error as e:
            error_fields("pipe_error", e)
            try:
                # Reach the sync point if the error came before it.
                p.sync()
            except psycopg.Error:
                pass
        out("pipe_a", a.fetchone()[0])
        if c is None:
            out("pipe_c", "no-result")
        else:
            try:
                out("pipe_c", c.fetchone()[0])
            except psycopg.Error:
                out("pipe_c", "no-result")
        d = conn.execute("select 'd'")
        n = conn.execute("select count(*) from items where id = 900001")
        p.sync()
        out("pipe_d", d.fetchone()[0])
        out("pipe_insert_kept", n.fetchone()[0])
    out("after_pipeline", conn.execute("select 'after'").fetchone()[0])
    # executemany pipelines its inserts.
    with conn.cursor() as cur:
        cur.executemany(
            "insert into items values (%s, %s)",
            [(i, f"many-{i}") for i in range(30001, 30501)],
        )
    out(
        "executemany_count",
        conn.execute("select count(*) from items where id between 30001 and 30500").fetchone()[0],
    )
    # A refused DELETE without WHERE in its own block, then the session goes on.
    with conn.pipeline() as p:
        x = conn.execute("select 'x'")
        p.sync()
        try:
            conn.execute("delete from items")
            p.sync()
            out("pipe2_error_type", "none")
        except psycopg.Error as e:
            error_fields("pipe2_error", e)
            try:
                p.sync()
            except psycopg.Error:
                pass
        y = conn.execute("select count(*) from items")
        p.sync()
        out("pipe2_x", x.fetchone()[0])
        out("pipe2_count", y.fetchone()[0])


def binary_results(conn):
    with conn.cursor() as cur:
        cur.execute(
            "select 1::int4, 'x'::text, 2.5::float8, '\\xdeadbeef'::bytea, %s::int8 * 2, "
            "array[1, 2, 3]::int4[], '2024-02-29'::date",
            [21],
            binary=True,
        )
        row = cur.fetchone()
        out("binary_formats", ",".join(str(cur.pgresult.fformat(i)) for i in range(7)))
        out("binary_row", repr(row[:5]))
        out("binary_array", repr(row[5]))
        out("binary_date", row[6].isoformat())
        cur.execute(
            "select g, g::text, g::float8 / 2 from generate_series(1, 10000) g",
            binary=True,
        )
        rows = cur.fetchall()
        out("binary_many_rows", len(rows))
        out("binary_many_sum", sum(r[0] for r in rows))
        out("binary_many_half_sum", sum(r[2] for r in rows))
        # A prepared statement, reused in binary.
        total = 0
        for i in range(10):
            cur.execute("select %s::int4 + 1", [i], prepare=True, binary=True)
            total += cur.fetchone()[0]
        out("prepared_sum", total)


def main():
    with psycopg.connect(sys.argv[1]) as conn:
        server_side_cursor(conn)
        conn.autocommit = True
        copy_both_ways(conn)
        pipelines(conn)
        binary_results(conn)
        out("final", conn.execute("select 'still usable'").fetchone()[0])


if __name__ == "__main__":
    main()
