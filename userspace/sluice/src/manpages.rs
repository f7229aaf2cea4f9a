//! `sluice completions` and `sluice man`: shell completions and man pages
//! made from the command line definition itself, so they never drift from
//! `--help`. `cargo xtask dist` runs both with the built binary and ships
//! the results in the tarball and the .deb.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// Print the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sluice", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the completion script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write every man page into `out` and name each file written.
pub(crate) fn man(cmd: clap::Command, out: &Path) -> ExitCode {
    match write_pages(cmd, out) {
        Ok(files) => {
            let mut stdout = std::io::stdout().lock();
            for f in files {
                // The pages are written; a closed pipe only loses this list.
                let _ = writeln!(stdout, "wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: writing man pages to {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// `sluice.1` and one page per (nested) subcommand, named by its path
/// (`sluice-audit-export.1`); `help` gets none. Returns the files written.
pub(crate) fn write_pages(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(cmd: clap::Command, out: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        files.push(clap_mangen::Man::new(cmd.clone()).generate_to(out)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), out, files)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(out)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building sets each subcommand's display name (`sluice-audit-export`),
    // which names its page.
    cmd.build();
    let mut files = Vec::new();
    walk(cmd, out, &mut files)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::Cli::command(), "sluice", &mut script);
            let text = String::from_utf8(script).unwrap();
            for word in ["run", "doctor", "audit", "export", "approvals", "cleanup"] {
                assert!(text.contains(word), "{shell}: no {word} in\n{text}");
            }
        }
    }

    #[test]
    fn man_pages_exist_for_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("sluice-man-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = write_pages(crate::Cli::command(), &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "sluice.1",
            "sluice-run.1",
            "sluice-audit.1",
            "sluice-audit-export.1",
            "sluice-approvals.1",
            "sluice-config-check.1",
            "sluice-token-new.1",
        ] {
            assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let top = std::fs::read_to_string(dir.join("sluice.1")).unwrap();
        assert!(top.starts_with(".ie") || top.contains(".TH"), "{top}");
        assert!(
            top.contains("audit") && top.contains("fail closed"),
            "{top}"
        );
        let export = std::fs::read_to_string(dir.join("sluice-audit-export.1")).unwrap();
        assert!(export.contains("sluice\\-audit\\-export"), "{export}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
