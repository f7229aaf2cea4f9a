//! A real OpenID provider for the OIDC tests: `node tests/oidc/provider.js`
//! (the npm package `oidc-provider`, installed into `tests/oidc/node_modules`
//! by `cargo xtask setup`) on a free loopback port, and the scripted user in
//! `tests/oidc/user.js` that signs in through the provider's real device flow
//! pages to get real tokens.
//!
//! Accounts and clients are described at the top of `provider.js`. Tokens
//! are real: the same login and consent pages a person would see, driven
//! over HTTP. Nothing here leaves 127.0.0.1 — the host's, or that of the
//! network namespace the provider was started in ([`Options::netns`]).
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::Scratch;

/// How long the provider may take to answer discovery after it is spawned.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long one scripted login (device code, login, consent, token) may take.
const SCRIPT_LIMIT: Duration = Duration::from_secs(20);
/// One HTTP exchange with the provider's harness routes.
const HTTP_LIMIT: Duration = Duration::from_secs(5);

/// `tests/oidc`, where the Node harness lives.
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Whether `node` runs and `oidc-provider` is installed. Missing under
/// `SLUICE_REQUIRE_PRIVILEGED=1` is a failure that says to run setup;
/// elsewhere the test says why it skips and gets `false`.
pub fn available(test: &str) -> bool {
    let installed = harness_dir().join("node_modules/oidc-provider/package.json");
    let problem = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() && installed.exists() => return true,
        Ok(out) if out.status.success() => format!("{} is missing", installed.display()),
        Ok(out) => format!(
            "`node --version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("cannot run `node` ({e})"),
    };
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "{test}: {problem}; run `cargo xtask setup` (it installs nodejs and npm and runs `npm ci` in tests/oidc)"
        );
    }
    eprintln!("SKIP {test}: {problem}; run `cargo xtask setup`");
    false
}

/// How to start a provider.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// ID token lifetime in seconds (the provider's default here is 600).
    pub id_token_ttl: Option<u64>,
    /// Run the provider on the loopback of this network namespace (a path
    /// such as `/run/netns/NAME`, see [`crate::netns::Netns::path`]) instead
    /// of the host's. The scripted user and the harness's own requests then
    /// run there too (`nsenter`), since that loopback is reachable only
    /// from inside.
    pub netns: Option<String>,
}

/// A running `provider.js`, killed on drop.
pub struct Provider {
    child: Child,
    port: u16,
    issuer: String,
    netns: Option<String>,
    log: PathBuf,
    _scratch: Scratch,
}

impl Provider {
    /// Starts a provider with default options; `None` when the harness is
    /// not installed and skipping is allowed (see [`available`]).
    pub fn start(test: &str) -> Option<Provider> {
        Provider::start_with(test, Options::default())
    }

    /// Starts a provider on a free loopback port and waits (at most
    /// [`START_LIMIT`]) until its discovery document answers.
    pub fn start_with(test: &str, options: Options) -> Option<Provider> {
        if !available(test) {
            return None;
        }
        // A port picked by binding :0 can be taken by someone else before
        // node binds it: try a few times.
        let mut last_error = String::new();
        for attempt in 0..3 {
            let scratch = Scratch::new(&format!("oidc-{test}-{}-{attempt}", std::process::id()));
            let log = scratch.path("provider.log");
            // Free on the host; a lab namespace's loopback holds only the
            // few fixed ports of its servers, below the ephemeral range.
            let port = free_port();
            let mut cmd = node_in(options.netns.as_deref());
            cmd.arg("provider.js").args(["--port", &port.to_string()]);
            if let Some(ttl) = options.id_token_ttl {
                cmd.args(["--id-token-ttl", &ttl.to_string()]);
            }
            let out = std::fs::File::create(&log).expect("create provider log");
            let err = out.try_clone().expect("clone provider log");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawn node provider.js");
            let mut provider = Provider {
                child,
                port,
                issuer: format!("http://127.0.0.1:{port}"),
                netns: options.netns.clone(),
                log,
                _scratch: scratch,
            };
            match provider.wait_ready() {
                Ok(()) => return Some(provider),
                Err(e) => last_error = e,
            }
        }
        panic!("{test}: the OpenID provider did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("node exited ({status}): {}", self.log_text()));
            }
            if let Ok((200, _)) = self.http("GET", "/.well-known/openid-configuration") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no discovery answer within {START_LIMIT:?}: {}",
            self.log_text()
        ))
    }

    /// `http://127.0.0.1:PORT`, the provider's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port the provider listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the provider printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A real ID token for `login` (see the accounts in `provider.js`)
    /// issued to `client_id`, through the whole device flow.
    pub fn id_token(&self, client_id: &str, login: &str) -> String {
        let out = run_bounded(
            self.node()
                .args(["user.js", "token", &self.issuer, client_id, login]),
            SCRIPT_LIMIT,
        );
        assert!(
            out.status.success(),
            "user.js token {client_id} {login} failed: {}\nprovider log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("user.js prints the token endpoint's JSON");
        answer["id_token"]
            .as_str()
            .expect("the token endpoint answered with an id_token")
            .to_owned()
    }

    /// Starts the scripted user approving a device login at
    /// `verification_uri_complete` as `login`; [`Approval::finish`] waits.
    pub fn approve(&self, verification_uri_complete: &str, login: &str) -> Approval {
        let child = self
            .node()
            .args(["user.js", "approve", verification_uri_complete, login])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node user.js approve");
        Approval { child: Some(child) }
    }

    /// Replaces the provider's signing key set with a new key (the old one
    /// is withdrawn). Returns the new key id.
    pub fn rotate_keys(&self) -> String {
        let (status, body) = self
            .http("POST", "/__lab/rotate")
            .expect("POST /__lab/rotate");
        assert_eq!(status, 200, "rotate: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("rotate answers JSON");
        v["kid"]
            .as_str()
            .expect("rotate names the new kid")
            .to_owned()
    }

    /// How many times the key set (`/jwks`) has been fetched.
    pub fn jwks_requests(&self) -> u64 {
        let (status, body) = self.http("GET", "/__lab/stats").expect("GET /__lab/stats");
        assert_eq!(status, 200, "stats: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats answer JSON");
        v["jwks_requests"]
            .as_u64()
            .expect("stats carry jwks_requests")
    }

    /// `node` in the harness directory, in the provider's namespace.
    fn node(&self) -> Command {
        node_in(self.netns.as_deref())
    }

    /// One HTTP/1.1 request to the provider; `(status, body)`.
    fn http(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        if self.netns.is_some() {
            return self.http_inside(method, path);
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut s = TcpStream::connect_timeout(&addr, HTTP_LIMIT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(HTTP_LIMIT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(HTTP_LIMIT))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {text:.200}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Provider {
    /// [`Provider::http`] from inside the provider's namespace, through
    /// `user.js http`.
    fn http_inside(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.issuer);
        let mut child = self
            .node()
            .args(["user.js", "http", method, &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn node user.js http: {e}"))?;
        let start = Instant::now();
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if start.elapsed() > HTTP_LIMIT {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("user.js http: {e}"))?;
        let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        match (status, v["body"].as_str()) {
            (Some(status), Some(body)) => Ok((status, body.to_owned())),
            _ => Err(format!("user.js http printed {v}")),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scripted user approving one device login; killed on drop.
pub struct Approval {
    child: Option<Child>,
}

impl Approval {
    /// Waits (bounded) for the script; panics with its output on failure.
    pub fn finish(mut self) {
        let child = self.child.take().expect("finish once");
        let out = wait_bounded(child, SCRIPT_LIMIT);
        assert!(
            out.status.success(),
            "user.js approve failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Approval {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `node`, run from `tests/oidc`, inside `netns` when given.
fn node_in(netns: Option<&str>) -> Command {
    let mut cmd = match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={path}")).args(["--", "node"]);
            c
        }
        None => Command::new("node"),
    };
    cmd.current_dir(harness_dir());
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    wait_bounded(child, limit)
}

/// Waits for `child` at most `limit`, then kills it. The scripts print a
/// few kilobytes at most, well under a pipe's buffer, so polling without
/// reading cannot deadlock.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect node output");
                panic!(
                    "node script ran longer than {limit:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for node: {e}"),
        }
    }
    child.wait_with_output().expect("collect node output")
}

/// A token's three parts, for tests that forge or damage tokens.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// The decoded header JSON.
    pub header: serde_json::Value,
    /// The decoded payload JSON.
    pub payload: serde_json::Value,
    /// The raw (base64url) signature part.
    pub signature: String,
    raw_header: String,
    raw_payload: String,
}

impl Jwt {
    /// Splits and decodes a compact JWS.
    pub fn parse(token: &str) -> Jwt {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS has three parts");
        let json = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&b64url_decode(p)).expect("a JWT part is JSON")
        };
        Jwt {
            header: json(parts[0]),
            payload: json(parts[1]),
            signature: parts[2].to_owned(),
            raw_header: parts[0].to_owned(),
            raw_payload: parts[1].to_owned(),
        }
    }

    /// The token with `header` re-encoded, payload bytes as issued.
    pub fn with_header(&self, header: &serde_json::Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64url_encode(header.to_string().as_bytes()),
            self.raw_payload
        )
    }

    /// The token with `payload` re-encoded, header and signature as issued.
    pub fn with_payload(&self, payload: &serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            self.raw_header,
            b64url_encode(payload.to_string().as_bytes()),
            self.signature
        )
    }

    /// The token with bytes in the middle of its signature flipped.
    pub fn with_flipped_signature(&self) -> String {
        let mut sig = b64url_decode(&self.signature);
        let mid = sig.len() / 2;
        for b in &mut sig[mid..mid + 4] {
            *b ^= 0x5a;
        }
        format!(
            "{}.{}.{}",
            self.raw_header,
            self.raw_payload,
            b64url_encode(&sig)
        )
    }
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64URL[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// base64url, padding optional; panics on other characters.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = B64URL
            .iter()
            .position(|&x| x == c)
            .unwrap_or_else(|| panic!("not base64url: {:?}", c as char)) as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// sluice's `[oidc]` (this lab provider's issuer, the `sluice-cli` client,
/// the harness's role groups) and `[admin]` sections, the admin API on
/// `listen`.
pub fn admin_sections(issuer: &str, listen: &str) -> String {
    format!(
        "[oidc]\nissuer = \"{issuer}\"\naudience = [\"sluice-cli\"]\nclient_id = \"sluice-cli\"\n\
         [oidc.roles]\nadmin = [\"sluice-admins\"]\napprover = [\"sluice-approvers\"]\n\
         auditor = [\"sluice-auditors\"]\n\n[admin]\nlisten = \"{listen}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "\u{ff}\u{fe}?>",
        ] {
            assert_eq!(b64url_decode(&b64url_encode(s.as_bytes())), s.as_bytes());
        }
        assert_eq!(b64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
    }
}
