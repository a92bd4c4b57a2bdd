//! Tables printed on stdout and written as markdown to docs/benchmarks.md, and the
//! description of the machine they were measured on.

use std::process::Command;

pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Aligned columns: the first left, the others right.
    pub fn text(&self) -> String {
        let width = |c: usize| {
            std::iter::once(&self.headers[c])
                .chain(self.rows.iter().map(|r| &r[c]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                } else {
                    out.push_str("  ");
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = format!("== {} ==\n", self.title);
        out.push_str(&line(&self.headers));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        for note in &self.notes {
            out.push_str(&format!("  ({note})\n"));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let escape = |s: &String| s.replace('|', "\\|");
        let mut out = format!("## {}\n\n", self.title);
        out.push_str(&format!(
            "| {} |\n",
            self.headers
                .iter()
                .map(escape)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        out.push('|');
        for c in 0..self.headers.len() {
            out.push_str(if c == 0 { "---|" } else { "---:|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!(
                "| {} |\n",
                row.iter().map(escape).collect::<Vec<_>>().join(" | ")
            ));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out.push_str(&format!("{note}\n"));
            }
        }
        out.push('\n');
        out
    }
}

/// `12345` → `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A figure with a sensible number of digits.
pub fn num(x: f64) -> String {
    if x >= 1000.0 {
        thousands(x.round() as usize)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A ratio: two decimals, three below 0.1.
pub fn ratio(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.2}")
    }
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn proc_field(file: &str, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The machine, toolchain and code the figures come from, as markdown list lines.
pub fn machine() -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let memory = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|m| m.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |k| format!("Linux {}", k.trim()));
    let rustc = command("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
    let commit =
        command("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = command("git", &["status", "--porcelain", "--untracked-files=no"])
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let commit = if dirty > 0 {
        format!("{commit} plus uncommitted changes to {dirty} tracked files")
    } else {
        commit
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    vec![
        format!("- CPU: {cores} cores (`nproc`), {cpu}"),
        format!("- memory: {memory}"),
        format!("- kernel: {kernel}"),
        format!(
            "- toolchain: {rustc}; eider-local and its baselines in the `fast` profile (opt-level 3), the Lambda binaries in the release profile (opt-level \"s\", what sam build deploys)"
        ),
        format!("- code: git commit {commit}"),
        format!("- load average when the bench started: {load}"),
    ]
}
