#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into corpus/<target>/.

Run from anywhere: `python3 tests/fuzz/seeds.py`. It replaces the seeds it
writes and leaves other files alone. The export seeds are written by the
store's own test (`write_the_export_fuzz_seeds` in
userspace/sluice-store/tests/tamper.rs, run by hand); the store_event seeds
are taken from them, so run that test first when the format changes.

Each seed is what its target expects: a first byte choosing options (see
the target's doc comment), then the input. Protocol streams are built
message by message the way PostgreSQL 15 and MariaDB 10.11 and their
clients send them; the MySQL payloads are the captures in
userspace/sluice-mywire/src/captured.rs. SQL comes from the policy tests,
docs/policy.md and the demo's bypass attempts.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- PostgreSQL -------------------------------------------------------------


def cstr(s):
    return s.encode() + b"\0"


def msg(tag, body):
    return tag + struct.pack(">i", len(body) + 4) + body


def startup(params, version=196608):
    body = struct.pack(">i", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">i", len(body) + 4) + body


SSL_REQUEST = struct.pack(">ii", 8, 80877103)
GSSENC_REQUEST = struct.pack(">ii", 8, 80877104)


def cancel(pid, key):
    return struct.pack(">iiii", 16, 80877102, pid, key)


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(name, sql, oids):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack(">h", len(oids)) + b"".join(struct.pack(">I", o) for o in oids))


def bind(portal, stmt, formats, params, result_formats):
    body = cstr(portal) + cstr(stmt)
    body += struct.pack(">h", len(formats)) + b"".join(struct.pack(">h", f) for f in formats)
    body += struct.pack(">h", len(params))
    for p in params:
        body += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    body += struct.pack(">h", len(result_formats)) + b"".join(struct.pack(">h", f) for f in result_formats)
    return msg(b"B", body)


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def execute(portal, rows):
    return msg(b"E", cstr(portal) + struct.pack(">i", rows))


def close(kind, name):
    return msg(b"C", kind + cstr(name))


SYNC = msg(b"S", b"")
FLUSH = msg(b"H", b"")
TERMINATE = msg(b"X", b"")


def auth(code, extra=b""):
    return msg(b"R", struct.pack(">i", code) + extra)


def parameter_status(k, v):
    return msg(b"S", cstr(k) + cstr(v))


def ready(status=b"I"):
    return msg(b"Z", status)


def row_description(cols):
    body = struct.pack(">h", len(cols))
    for name, table, attnum, type_oid, typlen, fmt in cols:
        body += cstr(name) + struct.pack(">IhIhih", table, attnum, type_oid, typlen, -1, fmt)
    return msg(b"T", body)


def data_row(values):
    body = struct.pack(">h", len(values))
    for v in values:
        body += struct.pack(">i", -1) if v is None else struct.pack(">i", len(v)) + v
    return msg(b"D", body)


def complete(tag):
    return msg(b"C", cstr(tag))


def fields(tag, pairs):
    return msg(tag, b"".join(k + cstr(v) for k, v in pairs) + b"\0")


CARDS = [
    ("id", 16384, 1, 23, 4, 0),
    ("pan", 16384, 2, 25, -1, 0),
    ("holder", 16384, 3, 25, -1, 0),
]


def pg_seeds():
    client = 0x05  # bit 7 clear: a client's stream; the rest picks read sizes
    server = 0x85
    login = startup([("user", "app"), ("database", "shop"), ("application_name", "psql"), ("client_encoding", "UTF8")])
    seeds = {
        "client-simple-query": login + query("select id, pan from cards where id = 7 limit 5") + TERMINATE,
        "client-ssl-then-startup": SSL_REQUEST + login + query("begin; delete from orders where id = 1; commit"),
        "client-gssenc-then-startup": GSSENC_REQUEST + login + query("select 1"),
        "client-cancel": cancel(4242, -559038737),
        "client-newer-minor": startup([("user", "app"), ("_pq_.command_trace", "on")], version=196610) + TERMINATE,
        "client-extended": login
        + parse("s1", "select pan from cards where id = $1", [23])
        + bind("", "s1", [0], [b"42"], [1])
        + describe(b"P", "")
        + execute("", 0)
        + SYNC
        + bind("p2", "s1", [1], [struct.pack(">i", 7)], [])
        + execute("p2", 10)
        + close(b"S", "s1")
        + close(b"P", "p2")
        + FLUSH
        + SYNC
        + TERMINATE,
        "client-null-param": login + parse("", "insert into notes values ($1, $2)", []) + bind("", "", [], [None, b"x"], []) + execute("", 0) + SYNC,
        "client-scram": login
        + msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvYD")
        + msg(b"p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa1RaAHCJ1gg9OKYIo,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        "client-password": login + msg(b"p", cstr("md5a3556571e93b0d20722ba62be61e8c2d")),
        "client-copy-in": login + query("copy notes from stdin") + msg(b"d", b"1\t4111111111111111\n") + msg(b"c", b"") + query("copy notes from stdin") + msg(b"f", cstr("client gave up")),
        "client-function-call": login + msg(b"F", struct.pack(">Ih", 1598, 1) + struct.pack(">h", 0) + struct.pack(">h", 1) + struct.pack(">i", 4) + struct.pack(">i", 5) + struct.pack(">h", 0)),
    }
    for name, data in seeds.items():
        write("pg_stream", name, bytes([client]) + data)

    server_seeds = {
        "server-scram-login": auth(10, cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
        + auth(11, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa1RaAHCJ1gg9OKYIo,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        + auth(12, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        + auth(0)
        + parameter_status("server_version", "15.18")
        + parameter_status("client_encoding", "UTF8")
        + msg(b"K", struct.pack(">ii", 4242, -559038737))
        + ready(),
        "server-md5-and-cleartext": auth(5, b"\x01\x02\x03\x04") + auth(3) + auth(0) + ready(),
        "server-rows": row_description(CARDS)
        + data_row([b"1", b"4111111111111111", b"Ada Lovelace"])
        + data_row([b"2", None, b"Grace Hopper"])
        + complete("SELECT 2")
        + ready(b"T"),
        "server-extended": msg(b"1", b"")
        + msg(b"2", b"")
        + msg(b"t", struct.pack(">hI", 1, 23))
        + row_description(CARDS[:2])
        + data_row([struct.pack(">i", 7), b"5500 0000 0000 0004"])
        + msg(b"s", b"")
        + msg(b"n", b"")
        + msg(b"3", b"")
        + complete("SELECT 1")
        + msg(b"I", b"")
        + ready(b"E"),
        "server-error-notice": fields(b"E", [(b"S", "ERROR"), (b"V", "ERROR"), (b"C", "42601"), (b"M", 'syntax error at or near "SLUICE_REFUSED_00000000_1"'), (b"P", "1")])
        + fields(b"N", [(b"S", "NOTICE"), (b"C", "00000"), (b"M", "card 4111111111111111 noted")])
        + msg(b"A", struct.pack(">i", 4242) + cstr("cards") + cstr("4111111111111111"))
        + ready(b"E"),
        "server-copy-out": msg(b"H", struct.pack(">bhhh", 0, 2, 0, 0)) + msg(b"d", b"1\t4111111111111111\n") + msg(b"c", b"") + complete("COPY 1") + ready(),
        "server-copy-in": msg(b"G", struct.pack(">bhh", 0, 1, 0)),
        "server-negotiate": msg(b"v", struct.pack(">ii", 196608, 1) + cstr("_pq_.command_trace")) + fields(b"E", [(b"S", "FATAL"), (b"C", "28000"), (b"M", "no pg_hba.conf entry")]),
    }
    for name, data in server_seeds.items():
        write("pg_stream", name, bytes([server]) + data)


# --- MySQL ------------------------------------------------------------------

# Captured from MariaDB 10.11.19 and its `mariadb` 3.3 client
# (userspace/sluice-mywire/src/captured.rs).
GREETING = "0a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000b000000374f66377b29575a00fef7080200ff81150000000000001d0000003e6871214c3b2543613f5775006d7973716c5f6e61746976655f70617373776f726400"
RESPONSE = "8ca2bf000000100021000000000000000000000000000000000000001d0000006e61740014362f7493ccd843338829a0669f5dac9df88aff626d7973716c006d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640532363933390f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
AUTH_OK = "0000000240000000080106056d7973716c"
QUERY = "0373656c6563742031206173206f6e652c206e756c6c206173206e2c2027782720617320732c2074696d657374616d7027323032342d30322d32392030313a30323a30332e3132333435362720617320742c202d322e35653020617320642c2063617374282d3720617320756e7369676e6564292061732075"
COLUMN_COUNT = "0601"
COLUMNS = [
    "03646566000000036f6e6500000c3f0001000000038100000000",
    "03646566000000016e00000c3f0000000000068000000000",
    "03646566000000017300000c210003000000fd0100270000",
    "03646566000000017400000c3f001a0000000c8100060000",
    "03646566000000016400000c3f00060000000581001f0000",
    "03646566000000017500000c3f001400000008a100000000",
]
EOF_1 = "fe00000200"
ROW = "0131fb01781a323032342d30322d32392030313a30323a30332e313233343536042d322e35143138343436373434303733373039353531363039"
EOF_2 = "fe01000200"
ED_SWITCH = "fe636c69656e745f65643235353139002dbc2a85935907c4f351d704def4c55f9feff85aa81e3c39a7c113a70806b3a7"
ED_RESPONSE = "2a736dc0603175419f6f6229daae71156b044b801debef1747a8351144f42d63199e6b9e5936165a5da5feaf0f5f25a17f9b01e719b0789c3fae4902a26da10d"


def packet(seq, payload):
    if isinstance(payload, str):
        payload = bytes.fromhex(payload)
    return struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload


def lenenc(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lstr(b):
    if isinstance(b, str):
        b = b.encode()
    return lenenc(len(b)) + b


def column_def(name, table, col_type, flags=0, decimals=0, length=255):
    return (
        lstr("def") + lstr("shop") + lstr(table) + lstr(table) + lstr(name) + lstr(name)
        + b"\x0c" + struct.pack("<HIBHB", 45, length, col_type, flags, decimals) + b"\0\0"
    )


def ok_packet(affected=0, insert_id=0, status=2, warnings=0, info=b""):
    return b"\x00" + lenenc(affected) + lenenc(insert_id) + struct.pack("<HH", status, warnings) + info


def err_packet(code, state, message):
    return b"\xff" + struct.pack("<H", code) + b"#" + state.encode() + message.encode()


def my_seeds():
    seed = 0x03
    client_caps = 0x000FA68D  # protocol 4.1, secure connection, plugin auth, connect attrs, ...
    ssl_request = struct.pack("<IIB", client_caps | 0x800, 1 << 24, 45) + b"\0" * 23
    prepare = b"\x16" + b"select pan from cards where id = ? and holder = ?"
    # COM_STMT_EXECUTE: statement 1, no cursor, iteration 1, null bitmap,
    # new-params-bound flag, types (LONGLONG, VAR_STRING), values.
    execute = (
        b"\x17" + struct.pack("<IBI", 1, 0, 1) + b"\x00" + b"\x01"
        + struct.pack("<BBBB", 8, 0, 253, 0)
        + struct.pack("<q", 7) + lstr("Ada")
    )
    prepare_ok = b"\x00" + struct.pack("<IHHBH", 1, 1, 2, 0, 0)
    binary_row = b"\x00\x00" + struct.pack("<q", 7) + lstr("4111111111111111")
    streams = {
        "server-login-native": packet(0, GREETING) + packet(2, AUTH_OK),
        "client-login-native": packet(1, RESPONSE) + packet(0, QUERY) + packet(0, b"\x01"),
        "server-text-result": packet(1, COLUMN_COUNT)
        + b"".join(packet(2 + i, c) for i, c in enumerate(COLUMNS))
        + packet(8, EOF_1)
        + packet(9, ROW)
        + packet(10, EOF_2),
        "server-ed25519-switch": packet(0, GREETING) + packet(2, ED_SWITCH) + packet(4, AUTH_OK),
        "client-ed25519-answer": packet(1, RESPONSE) + packet(3, ED_RESPONSE),
        "client-ssl-request": packet(1, ssl_request),
        "client-prepared": packet(0, prepare) + packet(0, execute) + packet(0, b"\x19" + struct.pack("<I", 1)) + packet(0, b"\x1a" + struct.pack("<I", 1)),
        "server-prepared": packet(1, prepare_ok)
        + packet(2, column_def("?", "", 253))
        + packet(3, column_def("?", "", 253))
        + packet(4, b"\xfe\x00\x00\x02\x00")
        + packet(5, column_def("pan", "cards", 253))
        + packet(6, b"\xfe\x00\x00\x02\x00"),
        "server-binary-rows": packet(1, b"\x02")
        + packet(2, column_def("id", "cards", 8, flags=0x1003))
        + packet(3, column_def("pan", "cards", 253))
        + packet(4, b"\xfe\x00\x00\x22\x00")
        + packet(5, binary_row)
        + packet(6, b"\xfe\x00\x00\x22\x00"),
        "client-commands": packet(0, b"\x02shop") + packet(0, b"\x04cards\x00") + packet(0, b"\x0e") + packet(0, b"\x03KILL QUERY 11") + packet(0, b"\x01"),
        "client-change-user": packet(0, b"\x11" + b"other\x00" + b"\x14" + bytes(range(20)) + b"shop\x00" + struct.pack("<H", 45) + b"mysql_native_password\x00"),
        "server-ok-err": packet(1, ok_packet(3, 0, 0x4002, 0, b"\x00Rows matched: 3  Changed: 3  Warnings: 0"))
        + packet(1, err_packet(1142, "42000", "SELECT command denied to user 'app'@'10.0.0.2' for table 'cards' (sluice: policy.default)")),
        "server-local-infile": packet(1, b"\xfb/etc/passwd"),
        "server-auth-more-data": packet(2, b"\x01\x03") + packet(4, b"\x01-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----\n"),
    }
    for name, data in streams.items():
        write("my_stream", name, bytes([seed]) + data)


# --- SQL ----------------------------------------------------------------------

POSTGRES_SQL = [
    "select c.id, c.pan as card, upper(c.holder) as h from cards c where c.id = 7 limit 10",
    "select * from (select id, pan from cards limit 5) s",
    "delete from orders",
    "alter table orders add column note text",
    "select id, concat('card ', pan) as label from cards limit 10",
    "select id from cards where pan like '4111%' limit 10",
    "select holder, pan::text || '' as x from cards",
    "select reverse(pan) from cards",
    "select encode(convert_to(pan, 'UTF8'), 'base64') from cards",
    "with t as (select pan as note from cards) select note from t",
    "select pan::int from cards",
    "copy cards to stdout",
    "select 1; delete from orders where id = 1",
    "select * into t2 from orders",
    "select pg_notify('c', pan) from cards limit 1",
    "select query_to_xml('select pan from cards', true, false, '')",
    "select * from unnest((select array_agg(pan) from cards limit 1))",
    "select row_to_json(c) from cards c limit 1",
    "select id from orders union select pan from cards limit 1",
    "insert into archive select * from cards",
    "update cards set holder = 'x' where pan = '4111111111111111'",
    "begin; set local role admin; commit",
    "select abalance from pgbench_accounts where aid = $1",
    "select e'4111\\\\1111' from cards where id <> -3 and x >= 2.5e3 fetch first 5 rows only",
]

MYSQL_SQL = [
    "select id /*!, pan */ from cards limit 10",
    "SELECT /*!50000 pan */ FROM cards",
    "SELECT HEX(pan) FROM cards",
    "SELECT pan FROM cards INTO OUTFILE '/tmp/cards.txt'",
    "SELECT c FROM sbtest1 WHERE id=?",
    "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 1 AND 10 ORDER BY c",
    "SELECT @v := id FROM orders",
    "SELECT id INTO @v FROM orders LIMIT 1",
    "SET sql_mode = 'ANSI_QUOTES'",
    "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
    "HANDLER cards OPEN; HANDLER cards READ FIRST",
    "select `pan`, \"x\" from `shop`.`cards` where id = 0x1F # comment\n limit 3",
    "SHOW COLUMNS FROM cards",
    "KILL QUERY 11",
]


def sql_seeds():
    for i, sql in enumerate(POSTGRES_SQL):
        # Bit 0 clear: PostgreSQL; bits 1-3 vary the policy and identity.
        write("policy_sql", f"pg-{i:02d}", bytes([(i % 8) << 1]) + sql.encode())
    for i, sql in enumerate(MYSQL_SQL):
        write("policy_sql", f"my-{i:02d}", bytes([1 | (i % 8) << 1]) + sql.encode())


# --- Values for the detectors --------------------------------------------------

# First byte: bits 0-2 the column (0 none, 1 cvv, 2 card_cvc2, ...), bit 3
# CVV off, bits 4-6 email, SSN, IBAN on.
VALUES = [
    (0x70, "4111111111111111"),
    (0x70, "card 4111 1111 1111 1111 exp 12/29"),
    (0x70, "4111-1111-1111-1111"),
    (0x00, "1111111111111114"),
    (0x00, "%B4111111111111111^LOVELACE/ADA^2912101000000000000000?"),
    (0x00, ";4111111111111111=29121010000000000000?"),
    (0x00, "4111111111111111=2912101000000"),
    (0x00, "00004111111111111111"),
    (0x00, "0000000000042"),
    (0x00, "12345678901234567890123456789012"),
    (0x00, "83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-41576422241-93426793964-56405065102-33518432330"),
    (0x00, "7d1e13b0-4111-1111-1111-111111111111"),
    (0x01, "123"),
    (0x02, " 4321 "),
    (0x04, "123"),
    (0x70, "GB82 WEST 1234 5698 7654 32 and GB82WEST12345698765432"),
    (0x70, "078-05-1120"),
    (0x70, "ada.lovelace@example.com, 4111111111111111"),
    (0x70, '{"pan": "5500000000000004", "holder": "Grace"}'),
    (0x00, "7888888-78777888888-77"),
]


def detect_seeds():
    for i, (pick, value) in enumerate(VALUES):
        write("detect", f"value-{i:02d}", bytes([pick]) + value.encode())


# --- Store values, from the real export -----------------------------------------


def store_seeds():
    path = os.path.join(CORPUS, "export", "three-sessions.jsonl")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run the store's write_the_export_fuzz_seeds test first")
    kinds = {}
    checkpoint = None
    summary = None
    with open(path, "rb") as f:
        for line in f:
            # Raw JSON of `event` and `body`, as the export embeds them.
            obj = json.loads(line)
            if obj["type"] == "event" and obj["event"]["kind"] not in kinds:
                body = raw_field(line, b'"event":')
                key = struct.pack(">QI", obj["session"], obj["seq"])
                value = b"\x01" + struct.pack(">QQ", obj["global"], obj["time_us"]) + bytes.fromhex(obj["hash"]) + body
                kinds[obj["event"]["kind"]] = key + value
            elif obj["type"] == "checkpoint" and checkpoint is None:
                checkpoint = b"\x01" + bytes.fromhex(obj["signature"]) + raw_field(line, b'"body":')
            elif obj["type"] == "session" and summary is None:
                summary = json.dumps(obj["summary"], separators=(",", ":")).encode()
            elif obj["type"] == "header":
                key = obj["public_key"].encode()
    for kind, data in kinds.items():
        write("store_event", f"event-{kind}", data)
    write("store_event", "checkpoint", checkpoint)
    write("store_event", "summary", summary)
    write("store_event", "public-key", key + b"\n")
    for i, t in enumerate(["2026-11-22T10:26:37.123456Z", "2026-11-22T10:00:00+01:00", "15m", "7d"]):
        write("store_event", f"time-{i}", t.encode())


def raw_field(line, prefix):
    """The JSON value after `prefix` up to the line's closing brace: the
    export puts `event` and `body` last, embedded verbatim."""
    start = line.index(prefix) + len(prefix)
    return line[start:].rstrip(b"\r\n")[:-1]


if __name__ == "__main__":
    pg_seeds()
    my_seeds()
    sql_seeds()
    detect_seeds()
    store_seeds()
