//! The book in `learning_docs/`, and the checks that keep it from drifting from the crates.
//!
//! - `cargo xtask book-diffs [--check]`: writes (or, with `--check`, only compares) the
//!   "what changed since the previous step" diffs in `learning_docs/src/generated/`.
//! - `cargo xtask book-lint`: every `{{#include path:anchor}}` resolves and its anchor exists,
//!   no Rust code is pasted into a chapter, every internal link and image resolves, every page
//!   is in SUMMARY.md. (Also run by `cargo test -p xtask`, with the diff freshness check.)
//! - `cargo xtask book-transcripts`: runs the "try it" transcripts (```console blocks) and
//!   compares their output.
//! - `cargo xtask book`: all of the above, then `mdbook build` with warnings as errors.
//!
//! Diffs are made with the `similar` crate rather than `git diff --no-index` or `diff -u`: the
//! output is then the same on every machine (no git config, no diff implementation differences,
//! works in a tarball of the workspace), which is what a byte-for-byte freshness check needs.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace;

/// The step crates, in order. The diff of step N is made against step N-1.
pub const STEPS: &[&str] = &[
    "step01-uts",
    "step02-pid",
    "step03-mount-chroot",
    "step04-proc",
    "step05-cgroups",
];

/// The mdBook version CI installs (`cargo install mdbook --version ... --locked`).
pub const MDBOOK_VERSION: &str = "0.5.4";

/// How long one transcript command may take before it counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn book_dir(ws: &Path) -> PathBuf {
    ws.join("learning_docs")
}

fn src_dir(ws: &Path) -> PathBuf {
    book_dir(ws).join("src")
}

// ---------------------------------------------------------------------------------------------
// commands

/// `cargo xtask book`: every check, then the build.
pub fn all(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("cargo xtask book takes no arguments, got {arg:?}");
    }
    let ws = workspace();
    println!("book: checking the generated diffs are fresh");
    report(stale_diffs(&ws)?)?;
    println!("book: checking includes, anchors, links and pages");
    report(lint(&ws)?)?;
    println!("book: running the transcripts");
    transcripts(&[])?;
    println!("book: mdbook build");
    mdbook_build(&ws)?;
    println!("book: all good");
    Ok(())
}

/// `cargo xtask book-diffs [--check]`.
pub fn diffs(args: &[String]) -> Result<()> {
    let ws = workspace();
    match args {
        [] => {
            for (path, text) in expected_diffs(&ws)? {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                    std::fs::create_dir_all(path.parent().expect("generated/ has a parent"))?;
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("wrote {}", rel(&ws, &path));
                }
            }
            Ok(())
        }
        [flag] if flag == "--check" => report(stale_diffs(&ws)?),
        _ => bail!("usage: cargo xtask book-diffs [--check]"),
    }
}

/// `cargo xtask book-lint`.
pub fn lint_cmd(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("cargo xtask book-lint takes no arguments, got {arg:?}");
    }
    report(lint(&workspace())?)
}

fn report(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    bail!("{} problem(s) in the book", problems.len())
}

fn rel(ws: &Path, path: &Path) -> String {
    path.strip_prefix(ws).unwrap_or(path).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// generated diffs

/// `learning_docs/src/generated/stepNN.diff` for every step after the first, with its content.
fn expected_diffs(ws: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for pair in STEPS.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        let old_path = format!("{old}/src/main.rs");
        let new_path = format!("{new}/src/main.rs");
        let read = |p: &str| {
            std::fs::read_to_string(ws.join(p)).with_context(|| format!("cannot read {p}"))
        };
        // Anchor comments are left out, as mdBook leaves them out of included code: they are
        // markers for the book and the workshop, not part of the lesson, and adding one must
        // not make the diffs stale.
        let (old_text, new_text) = (
            without_anchors(&read(&old_path)?),
            without_anchors(&read(&new_path)?),
        );
        let diff = similar::TextDiff::from_lines(&old_text, &new_text);
        let mut text = format!(
            "# Generated by `cargo xtask book-diffs` from {old_path} and {new_path} \
             (ANCHOR comment lines left out): do not edit.\n"
        );
        write!(
            text,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&old_path, &new_path)
        )?;
        let number = &new[..6]; // "step02"
        out.push((src_dir(ws).join(format!("generated/{number}.diff")), text));
    }
    Ok(out)
}

/// The source without its `// ANCHOR: name` and `// ANCHOR_END: name` lines.
fn without_anchors(text: &str) -> String {
    text.lines()
        .filter(|l| anchor_name(l, "ANCHOR:").is_none() && anchor_name(l, "ANCHOR_END:").is_none())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn stale_diffs(ws: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (path, text) in expected_diffs(ws)? {
        match std::fs::read_to_string(&path) {
            Ok(have) if have == text => {}
            Ok(_) => problems.push(format!(
                "{} is stale: a step's src/main.rs changed since it was generated. \
                 Run `cargo xtask book-diffs` and commit the result.",
                rel(ws, &path)
            )),
            Err(_) => problems.push(format!(
                "{} is missing. Run `cargo xtask book-diffs` and commit the result.",
                rel(ws, &path)
            )),
        }
    }
    Ok(problems)
}

// ---------------------------------------------------------------------------------------------
// includes, anchors, pasted code, links, pages

/// The book's Markdown pages (not the generated files), sorted.
fn pages(ws: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&src_dir(ws), &mut out)?;
    out.sort();
    Ok(out)
}

/// Every problem with includes, anchors, pasted code, links, images and pages.
fn lint(ws: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let src = src_dir(ws);
    let summary = src.join("SUMMARY.md");
    let summary_text = std::fs::read_to_string(&summary).context("cannot read SUMMARY.md")?;
    for page in pages(ws)? {
        let text = std::fs::read_to_string(&page)?;
        let name = rel(ws, &page);
        check_includes(&page, &name, &text, &mut problems);
        check_pasted_code(&name, &text, &mut problems);
        check_links(&src, &page, &name, &text, &mut problems);
        let in_summary = page == summary
            || page
                .strip_prefix(&src)
                .is_ok_and(|p| summary_text.contains(&format!("]({})", p.display())));
        if !in_summary {
            problems.push(format!(
                "{name}: not listed in SUMMARY.md, so mdBook would leave it out of the book"
            ));
        }
    }
    Ok(problems)
}

/// mdBook directives that read files: `{{#include path}}`, `{{#include path:anchor}}`,
/// `{{#include path:10:20}}`, `{{#rustdoc_include ...}}`. `\{{#include ...}}` is escaped.
fn directives(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(at) = rest.find("{{#") {
            let escaped = line[..offset + at].ends_with('\\');
            let after = &rest[at + 3..];
            let Some(end) = after.find("}}") else { break };
            if !escaped {
                out.push((n + 1, after[..end].trim().to_string()));
            }
            offset += at + 3 + end + 2;
            rest = &after[end + 2..];
        }
    }
    out
}

fn check_includes(page: &Path, name: &str, text: &str, problems: &mut Vec<String>) {
    let dir = page.parent().expect("a page is in a directory");
    for (line, directive) in directives(text) {
        let (kind, arg) = directive.split_once(' ').unwrap_or((&directive, ""));
        if !matches!(kind, "include" | "rustdoc_include") {
            if !matches!(kind, "title" | "playground") {
                problems.push(format!(
                    "{name}:{line}: unknown mdBook directive {{{{#{kind}}}}}"
                ));
            }
            continue;
        }
        let arg = arg.trim();
        let (path, selector) = arg.split_once(':').unwrap_or((arg, ""));
        let file = dir.join(path);
        let Ok(content) = std::fs::read_to_string(&file) else {
            problems.push(format!(
                "{name}:{line}: {{{{#{kind} {arg}}}}}: {} does not exist",
                file.display()
            ));
            continue;
        };
        let anchor = selector.split(':').next().unwrap_or("");
        if anchor.is_empty() || anchor.chars().all(|c| c.is_ascii_digit()) {
            continue; // the whole file, or a line range
        }
        let starts = content
            .lines()
            .filter(|l| anchor_name(l, "ANCHOR:") == Some(anchor))
            .count();
        let ends = content
            .lines()
            .filter(|l| anchor_name(l, "ANCHOR_END:") == Some(anchor))
            .count();
        if starts != 1 || ends != 1 {
            problems.push(format!(
                "{name}:{line}: {{{{#{kind} {arg}}}}}: {path} has {starts} `ANCHOR: {anchor}` and \
                 {ends} `ANCHOR_END: {anchor}` lines, expected one of each"
            ));
        }
    }
}

/// `// ANCHOR: name` -> Some("name") (mdBook's syntax: the marker, then the name).
fn anchor_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)?;
    let rest = &line[at + marker.len()..];
    rest.split_whitespace().next()
}

/// Fenced code blocks: (line of the opening fence, info string, body lines).
fn code_blocks(text: &str) -> Vec<(usize, String, Vec<&str>)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, &str, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                for fence in ["```", "~~~"] {
                    if let Some(info) = trimmed.strip_prefix(fence) {
                        let info = info.trim_start_matches(&fence[..1]).trim().to_string();
                        open = Some((n + 1, info, fence, Vec::new()));
                        break;
                    }
                }
            }
            Some((_, _, fence, body)) => {
                if trimmed.starts_with(*fence)
                    && trimmed.trim_start_matches(&fence[..1]).trim().is_empty()
                {
                    let (start, info, _, body) = open.take().expect("open block");
                    out.push((start, info, body));
                } else {
                    body.push(line);
                }
            }
        }
    }
    out
}

/// A Rust code block in a chapter must come from a crate: only include directives inside.
fn check_pasted_code(name: &str, text: &str, problems: &mut Vec<String>) {
    for (line, info, body) in code_blocks(text) {
        let lang = info.split([',', ' ']).next().unwrap_or("");
        if lang != "rust" {
            continue;
        }
        let pasted = body.iter().any(|l| {
            let l = l.trim();
            !(l.is_empty() || l.starts_with("{{#") && l.ends_with("}}"))
        });
        if pasted {
            problems.push(format!(
                "{name}:{line}: a ```rust block with pasted code: include it from the crate \
                 with {{{{#include ../../stepNN-x/src/main.rs:anchor}}}} instead"
            ));
        }
    }
}

/// Lines outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) if trimmed.starts_with(f) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push((n + 1, line)),
        }
    }
    out
}

/// Link and image targets in prose: `[text](target)` and `![alt](target)`, skipping inline code.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => in_code = !in_code,
            b']' if !in_code && bytes.get(i + 1) == Some(&b'(') => {
                if let Some(end) = line[i + 2..].find(')') {
                    let target = line[i + 2..i + 2 + end]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    out.push(target.to_string());
                    i += 2 + end;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The ids mdBook gives headings: lower case, spaces to `-`, other punctuation dropped.
fn heading_ids(text: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (_, line) in prose_lines(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        // Text of the heading: drop link targets and formatting characters.
        let mut plain = String::new();
        let mut skip = false;
        let chars: Vec<char> = title.trim().chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c == ']' && chars.get(i + 1) == Some(&'(') {
                skip = true;
                continue;
            }
            if skip {
                if c == ')' {
                    skip = false;
                }
                continue;
            }
            plain.push(c);
        }
        let id: String = plain
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c.to_ascii_lowercase())
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 1;
        while ids.contains(&unique) {
            unique = format!("{id}-{n}");
            n += 1;
        }
        ids.push(unique);
    }
    ids
}

fn check_links(src: &Path, page: &Path, name: &str, text: &str, problems: &mut Vec<String>) {
    let dir = page.parent().expect("a page is in a directory");
    for (line, content) in prose_lines(text) {
        for target in link_targets(content) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.to_path_buf()
            } else {
                normalize(&dir.join(path))
            };
            if !file.starts_with(src) {
                problems.push(format!(
                    "{name}:{line}: link to {target} leaves learning_docs/src: the built book \
                     would not have it (link to the repository on the web, or name the path in `code`)"
                ));
                continue;
            }
            let Ok(target_text) = std::fs::read_to_string(&file) else {
                problems.push(format!(
                    "{name}:{line}: broken link {target}: {} does not exist",
                    file.display()
                ));
                continue;
            };
            if !fragment.is_empty()
                && file.extension().is_some_and(|e| e == "md")
                && !heading_ids(&target_text).iter().any(|id| id == fragment)
            {
                problems.push(format!(
                    "{name}:{line}: broken link {target}: no heading with id #{fragment} in {}",
                    file.display()
                ));
            }
        }
    }
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// transcripts

/// One `$ command` in a ```console block and the output the chapter says it prints.
#[derive(Debug)]
struct Transcript {
    page: String,
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// The ```console blocks of a page. Lines starting with `$ ` are commands; the lines up to the
/// next command are what it prints (stdout and stderr together, as on a terminal).
fn parse_transcripts(name: &str, text: &str) -> Vec<Transcript> {
    let mut out: Vec<Transcript> = Vec::new();
    for (start, info, body) in code_blocks(text) {
        if info.split([',', ' ']).next() != Some("console") {
            continue;
        }
        let first = out.len();
        for (i, line) in body.iter().enumerate() {
            if let Some(command) = line.strip_prefix("$ ") {
                out.push(Transcript {
                    page: name.to_string(),
                    line: start + 1 + i,
                    command: command.to_string(),
                    expected: Vec::new(),
                });
            } else if out.len() > first {
                let t = out.last_mut().expect("a command in this block");
                t.expected.push(line.to_string());
            }
        }
    }
    for t in &mut out {
        while t.expected.last().is_some_and(|l| l.trim().is_empty()) {
            t.expected.pop();
        }
    }
    out
}

/// `cargo xtask book-transcripts [FILTER]`: runs every transcript (or those whose page or
/// command contains FILTER) as a learner would, from the workspace, and compares the output.
pub fn transcripts(args: &[String]) -> Result<()> {
    let ws = workspace();
    let filter = args.first().map(String::as_str).unwrap_or("");
    let mut all = Vec::new();
    for page in pages(&ws)? {
        let text = std::fs::read_to_string(&page)?;
        all.extend(parse_transcripts(&rel(&ws, &page), &text));
    }
    all.retain(|t| t.page.contains(filter) || t.command.contains(filter));
    if all.is_empty() {
        bail!("no transcripts match {filter:?}");
    }
    // Build first and make sure the root filesystem exists, so that neither compiler output
    // nor the one-time "built the default root filesystem" note ends up in a transcript, and
    // the timeout only covers the command itself.
    let mut build = crate::cargo();
    build.args(["build", "--quiet"]);
    for package in STEPS.iter().chain(&["final"]) {
        build.args(["-p", package]);
    }
    crate::run_cmd(&mut build)?;
    crate::default_rootfs()?;

    let mut failures = 0;
    for t in &all {
        let started = Instant::now();
        let (status, output) = run_shell(&ws, &t.command)?;
        let lines: Vec<String> = output.lines().map(|l| l.trim_end().to_string()).collect();
        let mut lines = lines;
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let problem = if status != Some(0) {
            Some(match status {
                None => format!("did not finish within {COMMAND_TIMEOUT:?}"),
                Some(code) => format!(
                    "exited with status {code}; a transcript command must succeed \
                     (when a failure is the point, end it with `; echo \"exit status $?\"`)"
                ),
            })
        } else if !lines_match(&t.expected, &lines) {
            Some("printed something else".to_string())
        } else {
            None
        };
        match problem {
            None => println!(
                "ok   {}:{} ({:.1?}) $ {}",
                t.page,
                t.line,
                started.elapsed(),
                t.command
            ),
            Some(why) => {
                failures += 1;
                println!("FAIL {}:{} $ {}", t.page, t.line, t.command);
                println!("     {why}");
                println!("     --- the book says\n     +++ it printed");
                let expected = t.expected.join("\n") + "\n";
                let actual = lines.join("\n") + "\n";
                let diff = similar::TextDiff::from_lines(&expected, &actual);
                for change in diff.iter_all_changes() {
                    let sign = match change.tag() {
                        similar::ChangeTag::Delete => "-",
                        similar::ChangeTag::Insert => "+",
                        similar::ChangeTag::Equal => " ",
                    };
                    print!("     {sign}{change}");
                }
            }
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} transcript(s) failed. Placeholders: [..] any text in a line, \
             [PID] [INODE] [N] a number, a line `...` any number of lines.",
            all.len()
        );
    }
    println!("{} transcript(s) passed", all.len());
    Ok(())
}

/// Runs `command` with sh in the workspace, stdout and stderr into one stream as on a terminal.
/// `None` as status: it timed out and was killed.
fn run_shell(ws: &Path, command: &str) -> Result<(Option<i32>, String)> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{command}"))
        .current_dir(ws)
        .env("NO_COLOR", "1")
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("cannot run sh")?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status.code().unwrap_or(128));
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            // The whole process group: the shell and whatever it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap_or_default();
    Ok((status, output))
}

/// Does `line` match the pattern line `pattern`? `[..]` is any text, `[PID]`, `[INODE]` and `[N]`
/// are a decimal number; everything else is literal.
fn line_matches(pattern: &str, line: &str) -> bool {
    #[derive(Debug)]
    enum Tok<'a> {
        Lit(&'a str),
        Any,
        Num,
    }
    let mut toks = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let next = ["[..]", "[PID]", "[INODE]", "[N]"]
            .iter()
            .filter_map(|p| rest.find(p).map(|at| (at, *p)))
            .min();
        match next {
            Some((at, p)) => {
                if at > 0 {
                    toks.push(Tok::Lit(&rest[..at]));
                }
                toks.push(if p == "[..]" { Tok::Any } else { Tok::Num });
                rest = &rest[at + p.len()..];
            }
            None => {
                toks.push(Tok::Lit(rest));
                rest = "";
            }
        }
    }
    fn glob(toks: &[Tok], s: &str) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Lit(lit), rest)) => s.strip_prefix(lit).is_some_and(|s| glob(rest, s)),
            Some((Tok::Any, rest)) => (0..=s.len())
                .filter(|&i| s.is_char_boundary(i))
                .any(|i| glob(rest, &s[i..])),
            Some((Tok::Num, rest)) => {
                let digits = s.bytes().take_while(u8::is_ascii_digit).count();
                (1..=digits).any(|i| glob(rest, &s[i..]))
            }
        }
    }
    glob(&toks, line.trim_end())
}

/// Do the output lines match the expected ones? A line `...` matches any number of lines.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| {
            line_matches(first.trim_end(), line) && lines_match(rest, more)
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// mdbook build

fn mdbook_build(ws: &Path) -> Result<()> {
    let fix = format!("install it with `cargo install mdbook --version {MDBOOK_VERSION} --locked`");
    let version = Command::new("mdbook")
        .arg("--version")
        .output()
        .with_context(|| format!("mdbook is not installed: {fix}"))?;
    let version = String::from_utf8_lossy(&version.stdout);
    if !version.contains(&format!("v{MDBOOK_VERSION}")) {
        bail!(
            "found {}, the book is checked with mdbook v{MDBOOK_VERSION}: {fix}",
            version.trim()
        );
    }
    let out = Command::new("mdbook")
        .arg("build")
        .arg(book_dir(ws))
        .env("NO_COLOR", "1")
        .output()
        .context("cannot run mdbook build")?;
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Warnings as errors: mdBook reports a missing include or a broken SUMMARY entry as a
    // warning or an error in its log and may still exit 0.
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if !out.status.success() || !bad.is_empty() {
        bail!("mdbook build failed or warned:\n{log}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_diffs_are_fresh() {
        let problems = stale_diffs(&workspace()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn includes_anchors_links_and_pages_resolve() {
        let problems = lint(&workspace()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_chapter_has_transcripts() {
        for page in pages(&workspace()).unwrap() {
            let name = page.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("step") {
                let text = std::fs::read_to_string(&page).unwrap();
                assert!(
                    !parse_transcripts(&name, &text).is_empty(),
                    "{name} has no ```console transcript"
                );
            }
        }
    }

    #[test]
    fn placeholders() {
        assert!(line_matches("my PID is [PID]", "my PID is 4213"));
        assert!(!line_matches("my PID is [PID]", "my PID is "));
        assert!(line_matches("uts:[[INODE]]", "uts:[4026532177]"));
        assert!(line_matches(
            "[..]: can't fork[..]",
            "sh: can't fork: Resource temporarily unavailable"
        ));
        assert!(!line_matches("box", "boxes"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(lines_match(
            &s(&["a", "...", "z"]),
            &s(&["a", "b", "c", "z"])
        ));
        assert!(lines_match(&s(&["a", "...", "z"]), &s(&["a", "z"])));
        assert!(!lines_match(&s(&["a", "z"]), &s(&["a", "b", "z"])));
    }

    #[test]
    fn directives_and_links_are_parsed() {
        let text = "x {{#include ../a.rs:cli}} \\{{#include nope}}\n";
        assert_eq!(
            directives(text),
            vec![(1, "include ../a.rs:cli".to_string())]
        );
        assert_eq!(
            link_targets("see [a](b.md#c) and `[x](y)` ![i](img.svg)"),
            vec!["b.md#c", "img.svg"]
        );
        assert_eq!(
            heading_ids("# Try it\n## What goes wrong: `pivot_root`\n# Try it\n"),
            vec!["try-it", "what-goes-wrong-pivot_root", "try-it-1"]
        );
    }
}
