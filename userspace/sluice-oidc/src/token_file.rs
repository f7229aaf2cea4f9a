//! The CLI's token cache: what `sluice login` stores and later commands send
//! as their bearer token. A bearer token is a password for its lifetime, so
//! the file is created mode 0600 (in a directory created 0700), written
//! atomically, and refused when others can read it.

use std::{
    ffi::OsString,
    fmt,
    fs::{self, DirBuilder, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Token files larger than this are not sluice's.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// What a login leaves for later commands.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSet {
    /// The verified ID token, sent as `Authorization: Bearer`.
    pub id_token: String,
    /// The ID token's `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// A refresh token, when the provider granted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenSet {
    /// Whether the ID token's `exp` has passed.
    pub fn is_expired(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now >= self.expires_at
    }
}

/// Never prints the tokens.
impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("id_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where the CLI keeps its token: `$SLUICE_TOKEN_FILE`, else
/// `$XDG_CONFIG_HOME/sluice/token.json`, else `~/.config/sluice/token.json`.
pub fn default_token_path() -> PathBuf {
    token_path_from(|name| std::env::var_os(name), std::env::home_dir)
}

fn token_path_from(
    var: impl Fn(&str) -> Option<OsString>,
    home: impl FnOnce() -> Option<PathBuf>,
) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(file) = var("SLUICE_TOKEN_FILE") {
        return PathBuf::from(file);
    }
    // The XDG spec says a relative value is invalid and must be ignored.
    let config = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            var("HOME")
                .map(PathBuf::from)
                .or_else(home)
                .map(|home| home.join(".config"))
        })
        .unwrap_or_else(|| PathBuf::from(".config"));
    config.join("sluice").join("token.json")
}

/// Writes `t` to `path`, mode 0600, replacing any earlier file atomically
/// (a temporary file in the same directory, then a rename). A missing parent
/// directory is created mode 0700; an existing one is left as it is.
pub fn save_token(path: &Path, t: &TokenSet) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(|e| with_path(e, "cannot create the directory", &parent))?;
    }
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the token path names no file")
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = parent.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let body = serde_json::to_vec_pretty(t).map_err(io::Error::other)?;
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode above is filtered by the umask; 0600 is what we mean.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| with_path(e, "cannot write the token file", path))
}

/// Reads a token file written by [`save_token`]. Refuses a file that group
/// or others may read (a token another user could copy is not ours alone),
/// and never quotes the file's content in an error.
pub fn load_token(path: &Path) -> io::Result<TokenSet> {
    let meta = fs::metadata(path).map_err(|e| with_path(e, "cannot read the token file", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: the token file is readable by others (mode {mode:04o}); run `chmod 600` on it or `sluice login` again",
                path.display()
            ),
        ));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: too large for a sluice token file", path.display()),
        ));
    }
    let bytes = fs::read(path).map_err(|e| with_path(e, "cannot read the token file", path))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde_json's message may quote the content; keep only the position.
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a sluice token file (line {}, column {}); run `sluice login` again",
                path.display(),
                e.line(),
                e.column()
            ),
        )
    })
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "sluice-oidc-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn token() -> TokenSet {
        TokenSet {
            id_token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".into(),
            expires_at: 4_000_000_000,
            refresh_token: Some("refresh-secret".into()),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn saved_with_private_modes_and_read_back() {
        let dir = TempDir::new("modes");
        let path = dir.0.join("nested/sluice/token.json");
        save_token(&path, &token()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.0.join("nested")), 0o700);
        assert_eq!(load_token(&path).unwrap(), token());

        // Overwriting a file that had looser modes leaves 0600 behind.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        save_token(&path, &token()).unwrap();
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left next to it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn loose_modes_are_refused() {
        let dir = TempDir::new("loose");
        let path = dir.0.join("token.json");
        save_token(&path, &token()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_token(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("0640"), "{e}");
    }

    #[test]
    fn errors_never_quote_the_file() {
        let dir = TempDir::new("garbage");
        let path = dir.0.join("token.json");
        fs::write(&path, r#"{"id_token": 12, "secret": "hunter2-token"}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_token(&path).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("not a sluice token file"), "{e}");
    }

    #[test]
    fn debug_redacts() {
        let text = format!("{:?}", token());
        assert!(!text.contains("eyJ"), "{text}");
        assert!(!text.contains("refresh-secret"), "{text}");
        assert!(text.contains("4000000000"));
    }

    #[test]
    fn token_path_lookup() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SLUICE_TOKEN_FILE", "/run/t.json"), ("HOME", "/h")],
                "/run/t.json",
            ),
            (
                &[("SLUICE_TOKEN_FILE", ""), ("HOME", "/h")],
                "/h/.config/sluice/token.json",
            ),
            (
                &[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")],
                "/x/sluice/token.json",
            ),
            (
                &[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")],
                "/h/.config/sluice/token.json",
            ),
            (&[], "/passwd-home/.config/sluice/token.json"),
        ];
        for (vars, want) in cases {
            let got = token_path_from(
                |name| {
                    vars.iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| OsString::from(v))
                },
                || Some(PathBuf::from("/passwd-home")),
            );
            assert_eq!(got, Path::new(want), "{vars:?}");
        }
    }

    #[test]
    fn expiry() {
        let mut t = token();
        assert!(!t.is_expired());
        t.expires_at = 1;
        assert!(t.is_expired());
    }
}
