//! The `sluice policy check` examples in docs/policy.md are real: each
//! ```` ```console ```` block there holds `$ sluice policy check …` commands
//! (a trailing `\` continues one on the next line) followed by the output
//! they print. This test runs every command with the built binary from the
//! repository's root and fails when the output differs from the page, or
//! when the exit status does not match the decision the output names.
//! `SLUICE_BLESS=1` rewrites the outputs in the page instead.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// One example: where it is in the page, the command line, the output shown.
struct Example {
    /// Byte range of the shown output in the page.
    output_at: std::ops::Range<usize>,
    command: String,
    shown: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The examples of every ```console block whose commands are
/// `sluice policy check`.
fn examples(page: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(open) = page[pos..].find("```console\n") {
        let body_start = pos + open + "```console\n".len();
        let Some(close) = page[body_start..].find("\n```") else {
            break;
        };
        let body_end = body_start + close + 1;
        pos = body_end;
        // Split the block into commands and the output after each.
        let mut at = body_start;
        let mut current: Option<(String, usize)> = None;
        let mut lines = page[body_start..body_end].split_inclusive('\n').peekable();
        while let Some(line) = lines.next() {
            let line_start = at;
            at += line.len();
            if let Some(cmd) = line.strip_prefix("$ ") {
                if let Some((command, from)) = current.take() {
                    out.push(Example {
                        output_at: from..line_start,
                        shown: page[from..line_start].to_owned(),
                        command,
                    });
                }
                let mut command = cmd.trim_end_matches('\n').to_owned();
                while command.ends_with('\\') {
                    command.pop();
                    let Some(next) = lines.next() else { break };
                    at += next.len();
                    command.push(' ');
                    command.push_str(next.trim());
                }
                current = Some((command, at));
            }
        }
        if let Some((command, from)) = current.take() {
            out.push(Example {
                output_at: from..body_end,
                shown: page[from..body_end].to_owned(),
                command,
            });
        }
    }
    out.retain(|e| e.command.starts_with("sluice policy check "));
    out
}

/// Splits a command line as a POSIX shell would for the quoting used in the
/// page: words, '…' and "…" (with \" and \\ inside double quotes).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => w.push(n),
                            Some(n) => {
                                w.push('\\');
                                w.push(n);
                            }
                            None => w.push('\\'),
                        },
                        c => w.push(c),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Runs one example: exit status and what it printed (stdout, then stderr).
fn run(command: &str) -> (i32, String) {
    let argv = words(command);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(&argv[1..])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The exit status `sluice policy check` documents for the decision its
/// output ends with.
fn status_for(output: &str) -> Option<i32> {
    let last = output.lines().rev().find(|l| l.starts_with("decision: "))?;
    let word = last["decision: ".len()..].split_whitespace().next()?;
    match word {
        "ALLOW" => Some(0),
        "DENY" => Some(1),
        "APPROVE" => Some(3),
        _ => None,
    }
}

#[test]
fn policy_md_examples_print_what_the_page_shows() {
    let path = repo().join("docs/policy.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let found = examples(&page);
    assert!(
        found.len() >= 5,
        "expected at least 5 `$ sluice policy check` examples in ```console blocks of {}, found {}",
        path.display(),
        found.len()
    );
    let bless = std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1");
    let mut blessed = page.clone();
    let mut failures = Vec::new();
    // Back to front, so earlier ranges stay valid while blessing.
    for example in found.iter().rev() {
        let (status, printed) = run(&example.command);
        if let Some(want) = status_for(&printed) {
            assert_eq!(
                status, want,
                "`{}` exited {status}, but its decision line means {want}:\n{printed}",
                example.command
            );
        } else {
            panic!("`{}` printed no decision:\n{printed}", example.command);
        }
        if printed != example.shown {
            if bless {
                blessed.replace_range(example.output_at.clone(), &printed);
            } else {
                failures.push(format!(
                    "$ {}\n--- docs/policy.md shows:\n{}--- it prints:\n{}",
                    example.command, example.shown, printed
                ));
            }
        }
    }
    if bless {
        if blessed != page {
            std::fs::write(&path, blessed).unwrap();
        }
        return;
    }
    assert!(
        failures.is_empty(),
        "{} example(s) in docs/policy.md differ from what sluice prints \
         (fix the page, or rewrite its outputs with SLUICE_BLESS=1 and review the diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(
        words(r#"sluice policy check -i a "select 'x' || \"y\"" 'a b'"#),
        [
            "sluice",
            "policy",
            "check",
            "-i",
            "a",
            r#"select 'x' || "y""#,
            "a b"
        ]
    );
}
