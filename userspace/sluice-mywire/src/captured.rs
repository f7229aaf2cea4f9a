//! Known-answer tests against traffic captured from a real MariaDB 10.11.19
//! server and its `mariadb` 3.3 client (libmariadb), relayed through a
//! recording proxy: `mariadb -unat -psecret -D mysql -e "select ..."` for a
//! `mysql_native_password` user, and the same as an `ed25519` user. Both
//! passwords are `secret`. Parsing these and re-encoding them byte for
//! byte is what lets a proxy rewrite one field and forward the rest.
use crate::auth;
use crate::caps;
use crate::command::{Command, query_payload};
use crate::handshake::{Greeting, HandshakeResponse};
use crate::response::{self, ColumnDef, EofPacket, OkPacket, types};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

const GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000b000000374f66377b29575a00fef7080200ff81150000000000001d0000003e6871214c3b2543613f5775006d7973716c5f6e61746976655f70617373776f726400";
const RESPONSE: &str = "8ca2bf000000100021000000000000000000000000000000000000001d0000006e61740014362f7493ccd843338829a0669f5dac9df88aff626d7973716c006d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640532363933390f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";
const AUTH_OK: &str = "0000000240000000080106056d7973716c";
const QUERY: &str = "0373656c6563742031206173206f6e652c206e756c6c206173206e2c2027782720617320732c2074696d657374616d7027323032342d30322d32392030313a30323a30332e3132333435362720617320742c202d322e35653020617320642c2063617374282d3720617320756e7369676e6564292061732075";
/// Column count (6) and MariaDB's metadata-follows byte (cache metadata).
const COLUMN_COUNT: &str = "0601";
const COLUMNS: [&str; 6] = [
    "03646566000000036f6e6500000c3f0001000000038100000000",
    "03646566000000016e00000c3f0000000000068000000000",
    "03646566000000017300000c210003000000fd0100270000",
    "03646566000000017400000c3f001a0000000c8100060000",
    "03646566000000016400000c3f00060000000581001f0000",
    "03646566000000017500000c3f001400000008a100000000",
];
const EOF_1: &str = "fe00000200";
const ROW: &str = "0131fb01781a323032342d30322d32392030313a30323a30332e313233343536042d322e35143138343436373434303733373039353531363039";
const EOF_2: &str = "fe01000200";
const ED_SWITCH: &str = "fe636c69656e745f65643235353139002dbc2a85935907c4f351d704def4c55f9feff85aa81e3c39a7c113a70806b3a7";
const ED_RESPONSE: &str = "2a736dc0603175419f6f6229daae71156b044b801debef1747a8351144f42d63199e6b9e5936165a5da5feaf0f5f25a17f9b01e719b0789c3fae4902a26da10d";

#[test]
fn mariadb_greeting_and_response_round_trip() {
    let bytes = unhex(GREETING);
    let g = Greeting::parse(&bytes).unwrap();
    assert_eq!(g.server_version, b"5.5.5-10.11.19-MariaDB-0+deb12u1");
    assert_eq!(g.connection_id, 11);
    assert_eq!(g.scramble, b"7Of7{)WZ>hq!L;%Ca?Wu");
    assert!(caps::has_mariadb_extended(g.capabilities));
    assert_eq!(g.capabilities >> 32, 0x1d);
    assert_eq!(g.auth_plugin.as_deref(), Some(auth::NATIVE));
    assert_eq!(g.encode(), bytes);

    let bytes = unhex(RESPONSE);
    let r = HandshakeResponse::parse(&bytes).unwrap();
    assert_eq!(r.user, b"nat");
    assert_eq!(r.database.as_deref(), Some(&b"mysql"[..]));
    assert_eq!(r.auth_plugin.as_deref(), Some(auth::NATIVE));
    assert_eq!(
        r.capabilities >> 32,
        0x1d,
        "MariaDB client echoes extended caps"
    );
    assert!(r.capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0);
    assert_eq!(r.attribute(b"_client_name"), Some(&b"libmariadb"[..]));
    assert_eq!(r.attribute(b"program_name"), Some(&b"mysql"[..]));
    assert_eq!(r.attributes.len(), 7);
    assert_eq!(r.encode(), bytes);
    // The client's scramble is what we compute for the same password.
    assert_eq!(
        r.auth_response,
        auth::native_password(b"secret", &g.scramble)
    );
    assert_ne!(
        r.auth_response,
        auth::native_password(b"Secret", &g.scramble)
    );
}

#[test]
fn mariadb_ed25519_signature_matches() {
    let switch = auth::AuthSwitch::parse(&unhex(ED_SWITCH)).unwrap();
    assert_eq!(switch.plugin, auth::ED25519);
    assert_eq!(switch.data.len(), 32);
    assert_eq!(switch.encode(), unhex(ED_SWITCH));
    assert_eq!(auth::ed25519(b"secret", &switch.data), unhex(ED_RESPONSE));
}

#[test]
fn mariadb_text_result_set() {
    let caps_ = HandshakeResponse::parse(&unhex(RESPONSE))
        .unwrap()
        .capabilities;
    let ok = OkPacket::parse(&unhex(AUTH_OK), caps_).unwrap();
    assert_eq!(ok.schema_change(caps_), Some(&b"mysql"[..]));
    assert_eq!(ok.encode(), unhex(AUTH_OK));

    let query = unhex(QUERY);
    let Command::Query(sql) = Command::parse(&query).unwrap() else {
        panic!("not a query");
    };
    assert!(sql.starts_with(b"select 1 as one"));
    assert_eq!(query_payload(sql), query);

    assert_eq!(response::column_count(&unhex(COLUMN_COUNT)).unwrap(), 6);
    let defs: Vec<ColumnDef> = COLUMNS
        .iter()
        .map(|c| {
            let bytes = unhex(c);
            // The client asked for MariaDB's extended metadata: an empty
            // extended-type block follows each org_name.
            let d = ColumnDef::parse_for(&bytes, caps_).unwrap();
            assert_eq!(d.encode_for(caps_), bytes);
            assert!(ColumnDef::parse(&bytes).is_err());
            d
        })
        .collect();
    let kinds: Vec<(&[u8], u8)> = defs.iter().map(|d| (&d.name[..], d.column_type)).collect();
    assert_eq!(
        kinds,
        [
            (&b"one"[..], types::LONG),
            (b"n", types::NULL),
            (b"s", types::VAR_STRING),
            (b"t", types::DATETIME),
            (b"d", types::DOUBLE),
            (b"u", types::LONGLONG),
        ]
    );
    assert!(defs[5].is_unsigned());
    assert_eq!(defs[3].decimals, 6);

    for eof in [EOF_1, EOF_2] {
        let bytes = unhex(eof);
        assert!(response::is_eof(&bytes));
        assert_eq!(EofPacket::parse(&bytes).unwrap().encode(), bytes);
    }
    let row = unhex(ROW);
    let values = response::text_row(&row, defs.len()).unwrap();
    assert_eq!(
        values,
        vec![
            Some(&b"1"[..]),
            None,
            Some(b"x"),
            Some(b"2024-02-29 01:02:03.123456"),
            Some(b"-2.5"),
            Some(b"18446744073709551609"),
        ]
    );
    assert_eq!(response::encode_text_row(&values), row);

    // The same row in the binary protocol renders to the same text.
    let binary: Vec<Option<Vec<u8>>> = vec![
        Some(1i32.to_le_bytes().to_vec()),
        None,
        Some(b"x".to_vec()),
        Some(b"\xe8\x07\x02\x1d\x01\x02\x03\x40\xe2\x01\x00".to_vec()),
        Some((-2.5f64).to_le_bytes().to_vec()),
        Some((-7i64).to_le_bytes().to_vec()),
    ];
    let binary: Vec<Option<&[u8]>> = binary.iter().map(|v| v.as_deref()).collect();
    let encoded = response::encode_binary_row(&defs, &binary);
    let decoded = response::binary_row(&encoded, &defs).unwrap();
    assert_eq!(decoded, binary);
    for ((d, b), t) in defs.iter().zip(&decoded).zip(&values) {
        let text = b.and_then(|raw| response::binary_value_text(d, raw));
        assert_eq!(
            text.as_deref().map(str::as_bytes),
            *t,
            "{}",
            types::name(d.column_type)
        );
    }
}
