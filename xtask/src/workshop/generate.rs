//! Derives an exercise from its step crate: the step's `src/main.rs` with the marked regions
//! replaced by `todo!()`s, and a Cargo.toml that builds it outside the workspace.
//!
//! Markers: `// ANCHOR: ex_NAME` and `// ANCHOR_END: ex_NAME`, alone on their lines. They are
//! mdBook anchors, so the book (which hides every ANCHOR line in included code) never shows
//! them. Other (book) ANCHOR lines are dropped from the exercise too: they are not the lesson.

use super::exercises::{Exercise, Region};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const START: &str = "// ANCHOR: ex_";
const END: &str = "// ANCHOR_END: ex_";

/// The step's reference source.
pub fn reference_source(ws: &Path, ex: &Exercise) -> Result<String> {
    let path = ws.join(ex.package).join("src/main.rs");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The reference as a participant sees it: without the book's ANCHOR lines.
pub fn without_anchors(source: &str) -> String {
    source
        .lines()
        .filter(|l| !is_anchor(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn is_anchor(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("// ANCHOR:") || t.starts_with("// ANCHOR_END:")
}

/// The regions marked in `source`: name -> (first line, last line) of their content (0-based,
/// the marker lines excluded). Fails on unbalanced, nested or duplicated markers.
pub fn regions(source: &str) -> Result<BTreeMap<String, (usize, usize)>> {
    let mut found = BTreeMap::new();
    let mut open: Option<(String, usize)> = None;
    for (i, line) in source.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix(START) {
            if let Some((outer, at)) = &open {
                bail!(
                    "line {}: ex_{name} starts inside ex_{outer} (opened on line {})",
                    i + 1,
                    at + 1
                );
            }
            open = Some((name.to_string(), i));
        } else if let Some(name) = t.strip_prefix(END) {
            match open.take() {
                Some((opened, at)) if opened == name => {
                    if i == at + 1 {
                        bail!("line {}: region ex_{name} is empty", i + 1);
                    }
                    if found.insert(name.to_string(), (at + 1, i - 1)).is_some() {
                        bail!("line {}: region ex_{name} is marked twice", i + 1);
                    }
                }
                Some((opened, _)) => {
                    bail!("line {}: ex_{name} ends while ex_{opened} is open", i + 1)
                }
                None => bail!("line {}: ex_{name} ends but was never started", i + 1),
            }
        }
    }
    if let Some((name, at)) = open {
        bail!("line {}: ex_{name} is never closed", at + 1);
    }
    Ok(found)
}

/// The exercise's `src/main.rs`.
pub fn exercise_source(ex: &Exercise, reference: &str) -> Result<String> {
    derive(ex, reference, None)
}

/// For `dev-check`: the solution with region `blank` simply left out (no todo!()), every other
/// region solved: a participant who forgot that piece. Its check must fail too.
pub fn without_region(ex: &Exercise, reference: &str, blank: &str) -> Result<String> {
    derive(ex, reference, Some(blank))
}

/// The reference in the exercise's shape (its header included, every region solved): what
/// `diff` compares a participant's copy with, so that only real differences show.
pub fn solved_source(ex: &Exercise, reference: &str) -> Result<String> {
    derive(ex, reference, Some(""))
}

fn derive(ex: &Exercise, reference: &str, blank: Option<&str>) -> Result<String> {
    let found = regions(reference).with_context(|| format!("markers in {}", ex.package))?;
    for name in found.keys() {
        if !ex.regions.iter().any(|r| r.name == name) {
            bail!(
                "{}/src/main.rs marks region ex_{name}, which xtask/src/workshop/exercises.rs \
                 does not describe",
                ex.package
            );
        }
    }
    let mut starts: BTreeMap<usize, (&Region, usize)> = BTreeMap::new();
    for region in ex.regions {
        let &(first, last) = found.get(region.name).with_context(|| {
            format!(
                "{}/src/main.rs has no region ex_{} (markers `{}{}` ... `{}{}`)",
                ex.package, region.name, START, region.name, END, region.name
            )
        })?;
        starts.insert(first, (region, last));
    }

    let lines: Vec<&str> = reference.lines().collect();
    let mut out = String::new();
    let header_at = lines.iter().take_while(|l| l.starts_with("//!")).count();
    let mut i = 0;
    while i < lines.len() {
        if i == header_at {
            out.push_str(&header(ex));
        }
        if let Some(&(region, last)) = starts
            .get(&i)
            .filter(|(r, _)| blank.is_none_or(|b| b == r.name))
        {
            // The marker line before the region sets the indentation.
            let indent: String = lines[i - 1]
                .chars()
                .take_while(|c| c.is_whitespace())
                .collect();
            match blank {
                None => out.push_str(&todo(region, &indent)),
                Some(_) => out.push_str(&format!("{indent}// (ex_{} left out)\n", region.name)),
            }
            i = last + 1;
            continue;
        }
        if !is_anchor(lines[i]) {
            out.push_str(lines[i]);
            out.push('\n');
        }
        i += 1;
    }
    Ok(out)
}

fn header(ex: &Exercise) -> String {
    format!(
        "
// ---------------------------------------------------------------------------------------------
// Workshop exercise {step:02}: {title}.
// Made by `cargo xtask workshop start {step}` from {package}/src/main.rs, with this step's new
// feature taken out: fill in every todo!() below, then run `cargo xtask workshop check {step}`.
// Stuck? `cargo xtask workshop hint {step}`. Try it: `cargo run -- run /bin/sh` in this directory.
//
// Until every todo!() is filled in, code after it cannot be reached and some imports and fields
// are unused: those warnings would only be noise, hence this line (you may delete it when done).
#![allow(unreachable_code, unused_imports, unused_variables, dead_code)]
// ---------------------------------------------------------------------------------------------
",
        step = ex.step,
        title = ex.title,
        package = ex.package,
    )
}

fn todo(region: &Region, indent: &str) -> String {
    if region.in_drop {
        format!(
            "{indent}// (Behind this `if`: a todo!() must not run while another panic unwinds.)\n\
             {indent}if !std::thread::panicking() {{\n\
             {indent}    todo!(\"{}\");\n\
             {indent}}}\n",
            region.todo
        )
    } else {
        format!("{indent}todo!(\"{}\");\n", region.todo)
    }
}

/// The exercise crate's package name: the step's, with `my-` in front, so that its binary
/// never overwrites the step's own in the shared target directory.
pub fn package_name(ex: &Exercise) -> String {
    format!("my-{}", ex.package)
}

/// The sections of a TOML file, by header ("" for the lines before the first), each with its
/// lines (comments included). Enough for the workspace's own simple Cargo.toml files.
fn sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") && t.ends_with(']') {
            out.push((t.trim_matches(['[', ']']).to_string(), Vec::new()));
        } else if t.starts_with("[[") {
            out.push((t.to_string(), Vec::new()));
        } else {
            out.last_mut()
                .expect("never empty")
                .1
                .push(line.to_string());
        }
    }
    out
}

/// `key = value` lines of a section, by key.
fn entries(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The exercise crate's Cargo.toml: the step's, with what it inherits from the workspace
/// written out, path dependencies made to point into the workspace, the workspace's dev
/// profile (so that the dependencies built for the steps are reused), and an empty
/// `[workspace]` table: the copy is a crate of its own, not a member of this workspace.
pub fn cargo_toml(ws: &Path, ex: &Exercise, dir: &Path, name: &str) -> Result<String> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let root = sections(&read(ws.join("Cargo.toml"))?);
    let root_section = |name: &str| {
        root.iter()
            .find(|(h, _)| h == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    let package_inherited = entries(&root_section("workspace.package"));
    let deps_inherited = entries(&root_section("workspace.dependencies"));
    let step = sections(&read(ws.join(ex.package).join("Cargo.toml"))?);

    let mut out = format!(
        "# Your working copy of {package}, made by `cargo xtask workshop start {n}`.\n\
         # Not a member of the workspace (see [workspace] at the end): build and check it with\n\
         # `cargo xtask workshop check {n}`, or `cargo run -- run /bin/sh` in this directory.\n",
        package = ex.package,
        n = ex.step
    );
    for (header, lines) in &step {
        let is_deps = header.ends_with("dependencies");
        match header.as_str() {
            "" => continue,
            "dev-dependencies" => continue, // the step's tests are not copied
            h if h.starts_with("[[") => continue,
            "lints" => {
                for (h, l) in &root {
                    if let Some(kind) = h.strip_prefix("workspace.lints.") {
                        out.push_str(&format!("\n[lints.{kind}]\n"));
                        push_lines(&mut out, l);
                    }
                }
                continue;
            }
            _ => {}
        }
        out.push_str(&format!("\n[{header}]\n"));
        for line in lines {
            let t = line.trim();
            let Some((key, value)) = t.split_once('=') else {
                if !t.is_empty() {
                    out.push_str(&format!("{line}\n"));
                }
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if header == "package" && key == "name" {
                out.push_str(&format!("name = \"{name}\"\n"));
            } else if let Some(name) = key.strip_suffix(".workspace") {
                if value != "true" {
                    bail!("{}/Cargo.toml: unexpected {t:?}", ex.package);
                }
                let table = if is_deps {
                    &deps_inherited
                } else {
                    &package_inherited
                };
                let inherited = table.get(name).with_context(|| {
                    format!("{}/Cargo.toml: {name} is not in the workspace", ex.package)
                })?;
                let inherited = if is_deps {
                    absolute_path_dependency(ws, inherited, dir)
                } else {
                    inherited.clone()
                };
                out.push_str(&format!("{name} = {inherited}\n"));
            } else if value.contains("workspace") {
                bail!(
                    "{}/Cargo.toml: {t:?} inherits in a way the workshop does not handle yet",
                    ex.package
                );
            } else {
                out.push_str(&format!("{line}\n"));
            }
        }
    }
    for (h, l) in &root {
        if h.starts_with("profile.") {
            out.push_str(&format!("\n[{h}]\n"));
            push_lines(&mut out, l);
        }
    }
    out.push_str("\n[workspace]\n");
    Ok(out)
}

fn push_lines(out: &mut String, lines: &[String]) {
    let mut lines: Vec<&String> = lines.iter().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
}

/// `{ path = "support" }` (relative to the workspace) -> a path from the exercise's directory.
fn absolute_path_dependency(ws: &Path, spec: &str, dir: &Path) -> String {
    let Some(start) = spec.find("path = \"") else {
        return spec.to_string();
    };
    let from = start + "path = \"".len();
    let Some(len) = spec[from..].find('"') else {
        return spec.to_string();
    };
    let target = ws.join(&spec[from..from + len]);
    let path = match dir.strip_prefix(ws) {
        // Inside the workspace (workshop/stepNN): relative, so the clone can move.
        Ok(inside) => {
            let ups = inside.components().count();
            let mut p = PathBuf::new();
            for _ in 0..ups {
                p.push("..");
            }
            p.join(&spec[from..from + len])
        }
        Err(_) => target,
    };
    format!("{}{}{}", &spec[..from], path.display(), &spec[from + len..])
}

/// `.cargo/config.toml` of the exercise: the workspace's target directory (the dependencies
/// are already built there) and its runner (so `cargo run` in the copy uses sudo as needed).
pub fn cargo_config(ws: &Path) -> String {
    format!(
        "# Made by `cargo xtask workshop start`: build into the workspace's target directory\n\
         # (its dependencies are already compiled there) and run as root like the steps do.\n\
         [build]\n\
         target-dir = \"{target}\"\n\n\
         [target.'cfg(target_os = \"linux\")']\n\
         runner = \"{runner}\"\n",
        target = ws.join("target").display(),
        runner = ws.join("scripts/run-as-root").display(),
    )
}

/// Writes the whole exercise crate into `dir` (which must not hold work: the caller checks).
pub fn write_exercise(ws: &Path, ex: &Exercise, dir: &Path, name: &str) -> Result<()> {
    let source = exercise_source(ex, &reference_source(ws, ex)?)?;
    write_crate(ws, ex, dir, &source, name)
}

/// Writes the exercise crate into `dir` with `main_rs` as its program, as package `name`.
pub fn write_crate(ws: &Path, ex: &Exercise, dir: &Path, main_rs: &str, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(dir.join("Cargo.toml"), cargo_toml(ws, ex, dir, name)?)?;
    std::fs::write(dir.join(".cargo/config.toml"), cargo_config(ws))?;
    // The workspace's lock file pins the same versions the steps use: nothing to download.
    std::fs::copy(ws.join("Cargo.lock"), dir.join("Cargo.lock"))
        .context("cannot copy Cargo.lock")?;
    std::fs::write(dir.join("src/main.rs"), main_rs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workshop::exercises::EXERCISES;

    fn ws() -> PathBuf {
        crate::workspace()
    }

    #[test]
    fn every_step_has_an_exercise_with_regions_todos_and_hints() {
        let steps: Vec<u8> = EXERCISES.iter().map(|e| e.step).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5]);
        for ex in EXERCISES {
            assert!(!ex.regions.is_empty(), "step {} has no region", ex.step);
            assert!(!ex.hints.is_empty(), "step {} has no hints", ex.step);
            assert!(ex.hints.iter().all(|h| !h.trim().is_empty()));
            for r in ex.regions {
                assert!(
                    !r.todo.trim().is_empty(),
                    "ex_{} has no todo message",
                    r.name
                );
                assert!(
                    !r.todo.contains(['{', '}', '"', '\\']),
                    "the todo message of ex_{} must fit in todo!(\"...\") as it is",
                    r.name
                );
                assert!(
                    r.todo.starts_with(&format!("step {:02}: ", ex.step)),
                    "the todo message of ex_{} names its step",
                    r.name
                );
            }
        }
    }

    #[test]
    fn scaffold_checks_are_checks_of_their_step() {
        let checks = std::fs::read_to_string(ws().join("testkit/src/checks.rs")).unwrap();
        let features = ["Uts", "Pid", "Mount", "Proc", "Cgroups"];
        for ex in EXERCISES {
            for name in ex.scaffold_checks {
                let feature = features[usize::from(ex.step) - 1];
                assert!(
                    checks.contains(&format!("check!({feature}, {name},")),
                    "step {}: {name} is not a {feature} check in testkit/src/checks.rs",
                    ex.step
                );
            }
        }
    }

    #[test]
    fn markers_are_balanced_and_match_the_metadata() {
        for ex in EXERCISES {
            let source = reference_source(&ws(), ex).unwrap();
            let found = regions(&source).unwrap();
            let expected: Vec<&str> = {
                let mut v: Vec<&str> = ex.regions.iter().map(|r| r.name).collect();
                v.sort();
                v
            };
            let found_names: Vec<&str> = found.keys().map(String::as_str).collect();
            assert_eq!(found_names, expected, "regions of {}", ex.package);
        }
    }

    #[test]
    fn exercises_are_deterministic_and_replace_every_region() {
        for ex in EXERCISES {
            let source = reference_source(&ws(), ex).unwrap();
            let a = exercise_source(ex, &source).unwrap();
            let b = exercise_source(ex, &source).unwrap();
            assert_eq!(a, b, "{} is generated the same way twice", ex.package);
            assert!(!a.contains("ANCHOR"), "{}: no marker is left", ex.package);
            for r in ex.regions {
                assert_eq!(
                    a.matches(&format!("todo!(\"{}\")", r.todo)).count(),
                    1,
                    "{}: one todo!() for ex_{}",
                    ex.package,
                    r.name
                );
            }
            // The removed code is really gone: the first code line of each region.
            let found = regions(&source).unwrap();
            let lines: Vec<&str> = source.lines().collect();
            for (name, (first, last)) in &found {
                let code = lines[*first..=*last]
                    .iter()
                    .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
                    .unwrap_or_else(|| panic!("ex_{name} has code"));
                assert!(
                    !a.lines().any(|l| l == *code),
                    "{}: ex_{name}'s {code:?} is taken out",
                    ex.package
                );
            }
            assert!(
                a.starts_with("//! "),
                "{} keeps its documentation",
                ex.package
            );
            assert!(a.contains("#![allow(unreachable_code"));
            // Solved, it is the reference plus the exercise's header: nothing else differs.
            let solved = solved_source(ex, &source).unwrap();
            assert_eq!(
                solved.replacen(&header(ex), "", 1),
                without_anchors(&source),
                "{}",
                ex.package
            );
        }
    }

    #[test]
    fn regions_reject_bad_markers() {
        let bad = [
            "// ANCHOR: ex_a\nx\n",
            "// ANCHOR_END: ex_a\n",
            "// ANCHOR: ex_a\n// ANCHOR: ex_b\nx\n// ANCHOR_END: ex_b\n// ANCHOR_END: ex_a\n",
            "// ANCHOR: ex_a\n// ANCHOR_END: ex_a\n",
            "// ANCHOR: ex_a\nx\n// ANCHOR_END: ex_b\n",
            "// ANCHOR: ex_a\nx\n// ANCHOR_END: ex_a\n// ANCHOR: ex_a\nx\n// ANCHOR_END: ex_a\n",
        ];
        for text in bad {
            assert!(regions(text).is_err(), "{text:?} is refused");
        }
        let ok = regions("a\n  // ANCHOR: ex_a\n  x\n  y\n  // ANCHOR_END: ex_a\n").unwrap();
        assert_eq!(ok["a"], (2, 3));
    }

    #[test]
    fn cargo_toml_inherits_nothing_and_is_its_own_workspace() {
        for ex in EXERCISES {
            let dir = ws().join("workshop").join(format!("step{:02}", ex.step));
            let toml = cargo_toml(&ws(), ex, &dir, &package_name(ex)).unwrap();
            assert!(!toml.contains(".workspace"), "{toml}");
            assert!(!toml.contains("workspace = true"), "{toml}");
            assert!(toml.trim_end().ends_with("[workspace]"), "{toml}");
            assert!(toml.contains(&format!("name = \"my-{}\"", ex.package)));
            assert!(
                toml.contains("cfs-support = { path = \"../../support\" }"),
                "{toml}"
            );
            assert!(toml.contains("[profile.dev]"), "{toml}");
            assert!(!toml.contains("cfs-testkit"), "{toml}");
            let outside = cargo_toml(&ws(), ex, Path::new("/tmp/x"), "x").unwrap();
            assert!(outside.contains(&format!(
                "cfs-support = {{ path = \"{}\" }}",
                ws().join("support").display()
            )));
        }
    }
}
