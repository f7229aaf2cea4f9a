//! How the demo speaks: numbered steps, indented commentary, a ✓ or ✗ per
//! claim it checks, and the summary table at the end.
use std::io::IsTerminal;

pub struct Narrator {
    color: bool,
    total: u32,
    step: u32,
    results: Vec<(u32, String, bool)>,
}

impl Narrator {
    pub fn new(total: u32) -> Narrator {
        Narrator {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            total,
            step: 0,
            results: Vec::new(),
        }
    }

    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn title(&self, text: &str) {
        println!("{}", self.paint("1", text));
    }

    pub fn step(&mut self, text: &str) {
        self.step += 1;
        println!(
            "\n{} {}",
            self.paint("1;36", &format!("[{}/{}]", self.step, self.total)),
            self.paint("1", text)
        );
    }

    pub fn say(&self, text: &str) {
        for line in text.lines() {
            println!("      {line}");
        }
    }

    /// A command as the reader would type it.
    pub fn command(&self, text: &str) {
        println!("      {}", self.paint("2", &format!("$ {text}")));
    }

    /// Output of a program, dimmed and indented a little further.
    pub fn output(&self, text: &str) {
        for line in text.trim_end().lines() {
            println!("        {}", self.paint("33", line));
        }
    }

    pub fn check(&mut self, what: &str, ok: bool) -> bool {
        let mark = if ok {
            self.paint("32", "✓")
        } else {
            self.paint("31", "✗")
        };
        println!("      {mark} {what}");
        self.results.push((self.step, what.to_owned(), ok));
        ok
    }

    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|(_, _, ok)| *ok)
    }

    pub fn summary(&self, figures: &[(String, String)]) {
        println!("\n{}", self.paint("1", "Summary"));
        // As wide as the longest claim, so every verdict lines up.
        let width = self
            .results
            .iter()
            .map(|(_, what, _)| what.chars().count())
            .max()
            .unwrap_or(0)
            .max(13);
        println!("  {:<4} {:<width$} result", "step", "claim checked");
        for (step, what, ok) in &self.results {
            let verdict = if *ok {
                self.paint("32", "PASS")
            } else {
                self.paint("31", "FAIL")
            };
            println!("  {:<4} {:<width$} {verdict}", step, what);
        }
        if !figures.is_empty() {
            println!("\n  {}", self.paint("1", "What the audit store holds"));
            for (what, value) in figures {
                println!("  {what:<40} {value}");
            }
        }
    }
}
