//! Python clients for lab tests: psycopg 3, PyMySQL and mysqlclient from
//! PyPI, in the venv that `cargo xtask setup` creates at [`VENV`] (Debian
//! ships only psycopg2), and the scripts under `tests/python/` that drive
//! them.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Where `cargo xtask setup` puts the venv (`xtask/src/setup.rs`,
/// `PYTHON_VENV`); `SLUICE_LAB_VENV` points the tests at another one.
pub const VENV: &str = "/var/lib/sluice-lab/venv";

/// The venv's interpreter, if it exists and imports psycopg 3. Missing under
/// `SLUICE_REQUIRE_PRIVILEGED=1` is a failure that says to run setup;
/// elsewhere the test says why it skips and gets `None`.
pub fn interpreter(test: &str) -> Option<PathBuf> {
    let venv =
        std::env::var_os("SLUICE_LAB_VENV").map_or_else(|| PathBuf::from(VENV), PathBuf::from);
    let python = venv.join("bin/python3");
    let problem = match Command::new(&python)
        .args(["-c", "import psycopg; print(psycopg.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => return Some(python),
        Ok(out) => format!(
            "{} cannot import psycopg: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("no Python venv at {} ({e})", venv.display()),
    };
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "{test}: {problem}; run `cargo xtask setup` (it creates the venv and installs psycopg 3)"
        );
    }
    eprintln!("SKIP {test}: {problem}; run `cargo xtask setup`");
    None
}

/// A script under `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    assert!(path.exists(), "no Python script {}", path.display());
    path
}

/// The value of the first `key=value` line in a script's output.
pub fn field<'a>(output: &'a str, key: &str) -> Option<&'a str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// The venv's interpreter, if it exists and imports both MySQL drivers:
/// PyMySQL (`pymysql`) and mysqlclient (`MySQLdb`, built against
/// libmariadb). Missing under `SLUICE_REQUIRE_PRIVILEGED=1` is a failure
/// that says to run setup; elsewhere the test says why it skips and gets
/// `None`.
pub fn mysql_interpreter(test: &str) -> Option<PathBuf> {
    let venv =
        std::env::var_os("SLUICE_LAB_VENV").map_or_else(|| PathBuf::from(VENV), PathBuf::from);
    let python = venv.join("bin/python3");
    let problem = match Command::new(&python)
        .args(["-c", "import pymysql, MySQLdb"])
        .output()
    {
        Ok(out) if out.status.success() => return Some(python),
        Ok(out) => format!(
            "{} cannot import pymysql and MySQLdb: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("no Python venv at {} ({e})", venv.display()),
    };
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "{test}: {problem}; run `cargo xtask setup` (it installs PyMySQL and mysqlclient in the venv)"
        );
    }
    eprintln!("SKIP {test}: {problem}; run `cargo xtask setup`");
    None
}
