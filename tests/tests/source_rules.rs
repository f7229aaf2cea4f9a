//! Rules about the source itself, checked on every run: `unsafe` appears only
//! where a kernel or C interface needs it, and every such block says why it
//! is sound in a `// SAFETY:` comment just above it.
use std::{
    fs,
    path::{Path, PathBuf},
};

/// The repository root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code part of a line: what precedes a `//` comment (good enough for
/// this source, which has no `//` inside string literals next to `unsafe`).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Lines that open an unsafe block, function or impl.
fn opens_unsafe(line: &str) -> bool {
    let c = code(line);
    let mut rest = c;
    while let Some(at) = rest.find("unsafe") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + "unsafe".len()..].trim_start();
        let word_start = before.is_none_or(|b| !(b.is_alphanumeric() || b == '_'));
        if word_start
            && (after.is_empty()
                || after.starts_with('{')
                || after.starts_with("fn ")
                || after.starts_with("impl"))
        {
            return true;
        }
        rest = &rest[at + "unsafe".len()..];
    }
    false
}

/// Where unsafe code is expected: the eBPF programs and the map types they
/// share with userspace (`aya::Pod`), the kernel interfaces of the
/// interception crate, the daemon's few libc calls (umask, signals,
/// rlimits, capabilities), and the lab's `setns`.
const ALLOWED: &[&str] = &[
    "ebpf/sluice-ebpf/src/",
    "ebpf/sluice-common/src/",
    "userspace/sluice-intercept/",
    "userspace/sluice/src/main.rs",
    "userspace/sluice/src/run.rs",
    "userspace/sluice/src/run/caps.rs",
    "tests/src/packets.rs",
];

#[test]
fn unsafe_is_confined_to_kernel_interfaces_and_each_block_says_why() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["ebpf", "userspace", "xtask", "tests/src", "tests/tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());

    let mut undocumented = Vec::new();
    let mut outside = Vec::new();
    let mut blocks = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "tests/tests/source_rules.rs" {
            continue;
        }
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !opens_unsafe(line) {
                continue;
            }
            blocks += 1;
            // The comment sits just above, above any attribute and the
            // statement's first lines (`let x =`, a call's opening).
            let above = &lines[i.saturating_sub(6)..=i];
            if !above.iter().any(|l| l.contains("SAFETY:")) {
                undocumented.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
            if !ALLOWED.iter().any(|a| rel.starts_with(a)) {
                outside.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        blocks > 10,
        "found only {blocks} unsafe blocks: is the scan broken?"
    );
    assert!(
        undocumented.is_empty(),
        "unsafe without a `// SAFETY:` comment just above:\n{}",
        undocumented.join("\n")
    );
    assert!(
        outside.is_empty(),
        "unsafe outside the kernel interfaces (add the file to ALLOWED only if it \
         talks to the kernel or C):\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_scan_sees_unsafe_blocks_functions_and_impls_but_not_names() {
    for (line, want) in [
        ("    unsafe {", true),
        ("let rc = unsafe { libc::umask(0) };", true),
        ("unsafe fn f() {}", true),
        ("unsafe impl Send for X {}", true),
        ("    let raised = unsafe", true),
        ("fn unsafe_charset(c: u16) -> bool {", false),
        ("if unsafe_charset(x) {", false),
        ("// unsafe { in a comment }", false),
        ("#![deny(unsafe_code)]", false),
    ] {
        assert_eq!(opens_unsafe(line), want, "{line}");
    }
}
