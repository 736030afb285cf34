//! Turns the measuring part's lines into statistics, the Markdown report and an SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub round: usize,
    pub ms: f64,
    pub rss_kib: u64,
    pub cpu_ms: f64,
    pub ok: bool,
}

#[derive(Debug, Default)]
pub struct Data {
    /// Variants in the order they were measured, with what they do and their command line.
    pub variants: Vec<(String, String, String)>,
    pub skipped: Vec<(String, String)>,
    pub warm: BTreeMap<String, Vec<Sample>>,
    pub idle: BTreeMap<String, Vec<Sample>>,
    /// Per runtime: (wall ms, failures, containers) per batch.
    pub conc: BTreeMap<String, Vec<(f64, usize, usize)>>,
    pub notes: Vec<String>,
    pub clean: Option<String>,
    pub leaks: Vec<String>,
}

impl Data {
    pub fn parse(text: &str) -> Data {
        let mut d = Data::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            let int = |i: usize| f.get(i).and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
            match (f[0], f.len()) {
                ("variant", 4) => d.variants.push((f[1].into(), f[2].into(), f[3].into())),
                ("skip", 3) => d.skipped.push((f[1].into(), f[2].into())),
                ("warm" | "idle", 7) => {
                    let s = Sample {
                        round: int(2),
                        ms: num(3),
                        rss_kib: int(4) as u64,
                        cpu_ms: num(5),
                        ok: f[6] == "ok",
                    };
                    let map = if f[0] == "warm" {
                        &mut d.warm
                    } else {
                        &mut d.idle
                    };
                    map.entry(f[1].into()).or_default().push(s);
                }
                ("conc", 6) => {
                    d.conc
                        .entry(f[1].into())
                        .or_default()
                        .push((num(3), int(4), int(5)))
                }
                ("note", 2) => d.notes.push(f[1].into()),
                ("clean", 2) => d.clean = Some(f[1].into()),
                ("leak", 2) => d.leaks.push(f[1].into()),
                _ => {}
            }
        }
        d
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.variants.iter().map(|v| v.0.as_str())
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Summary of one runtime in one section.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// median(runtime) / median(crun).
    pub ratio: Option<f64>,
    /// Median of the per-round ratios runtime/crun (paired: same round, back to back).
    pub paired: Option<f64>,
    pub rss_median_kib: f64,
    pub rss_max_kib: u64,
    pub cpu_median_ms: f64,
    pub failed: usize,
    pub n: usize,
}

pub fn summarize(map: &BTreeMap<String, Vec<Sample>>, name: &str) -> Option<Summary> {
    let samples = map.get(name)?;
    let ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let crun = map.get("crun");
    let ratio = crun.map(|c| median(&ms) / median(&c.iter().map(|s| s.ms).collect::<Vec<_>>()));
    let paired = crun.and_then(|c| {
        let ratios: Vec<f64> = samples
            .iter()
            .filter_map(|s| c.iter().find(|x| x.round == s.round).map(|x| s.ms / x.ms))
            .collect();
        (!ratios.is_empty()).then(|| median(&ratios))
    });
    Some(Summary {
        median: median(&ms),
        min: min(&ms),
        max: max(&ms),
        ratio,
        paired,
        rss_median_kib: median(&samples.iter().map(|s| s.rss_kib as f64).collect::<Vec<_>>()),
        rss_max_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        cpu_median_ms: median(&samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>()),
        failed: samples.iter().filter(|s| !s.ok).count(),
        n: samples.len(),
    })
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}×"))
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// What the report needs besides the measurements.
pub struct Context {
    pub command: String,
    pub machine: Vec<(String, String)>,
    pub missing: Vec<String>,
    pub runs: usize,
    pub idle_runs: usize,
    pub idle_ms: u64,
    pub host_mounts: String,
    pub build_times: Vec<(String, f64)>,
}

fn time_table(out: &mut String, d: &Data, map: &BTreeMap<String, Vec<Sample>>) {
    out.push_str(
        "| runtime | median ms | min ms | max ms | × crun (medians) | × crun (paired) | CPU ms | failed |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for name in d.names() {
        if let Some(s) = summarize(map, name) {
            let _ = writeln!(
                out,
                "| `{name}` | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {}/{} |",
                s.median,
                s.min,
                s.max,
                ratio(s.ratio),
                ratio(s.paired),
                s.cpu_median_ms,
                s.failed,
                s.n
            );
        }
    }
}

/// The whole RESULTS.md.
pub fn markdown(d: &Data, cx: &Context) -> String {
    let mut out = String::new();
    out.push_str("# Benchmark: final vs crun, runc, bubblewrap and the steps\n\n");
    let _ = writeln!(
        out,
        "Generated by `{}` (xtask/src/bench.rs); do not edit by hand. Every number is a whole \
         process, timed from spawn to `wait4(2)` with the monotonic clock, the container \
         running busybox `true` from the same root file system. How to read it: \
         `learning_docs/src/performance.md`.\n",
        cx.command
    );
    out.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (k, v) in &cx.machine {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push('\n');
    for note in &d.notes {
        let _ = writeln!(out, "Note: {note}.\n");
    }
    if !cx.missing.is_empty() {
        let _ = writeln!(
            out,
            "Not measured (not installed): {}.\n",
            cx.missing.join(", ")
        );
    }
    for (name, why) in &d.skipped {
        let _ = writeln!(out, "Not measured: `{name}` failed its check run: {why}\n");
    }

    out.push_str("## What runs\n\n| runtime | work | command |\n|---|---|---|\n");
    for (name, what, cmd) in &d.variants {
        let _ = writeln!(out, "| `{name}` | {what} | `{cmd}` |");
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "## 1. Start to exit of `true`, warm\n\n{} rounds; each round starts every runtime once, \
         back to back, in a rotating order (after 2 unrecorded warm-up rounds). \"× crun \
         (paired)\" is the median of the per-round ratios. CPU ms: user+system time of the \
         runtime and its children (rusage).\n",
        cx.runs
    );
    time_table(&mut out, d, &d.warm);
    out.push('\n');

    if !d.idle.is_empty() {
        let _ = writeln!(
            out,
            "## 2. Start to exit after idle\n\n{} rounds, one launch every {} ms, so the \
             kernel's caches have cooled (on cgroup v1 the write of a pid into \
             `cgroup.procs` becomes slow then).\n",
            cx.idle_runs, cx.idle_ms
        );
        time_table(&mut out, d, &d.idle);
        out.push('\n');
    }

    if !d.conc.is_empty() {
        let n = d.conc.values().flatten().map(|c| c.2).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "## 3. {n} containers started at once\n\nWall time from the first spawn until the \
             last one exited; batches of different runtimes alternate.\n\n\
             | runtime | median ms | min ms | max ms | × crun | failed |\n|---|--:|--:|--:|--:|--:|"
        );
        let crun = d
            .conc
            .get("crun")
            .map(|c| median(&c.iter().map(|x| x.0).collect::<Vec<_>>()));
        for name in d.names() {
            let Some(b) = d.conc.get(name) else { continue };
            let ms: Vec<f64> = b.iter().map(|x| x.0).collect();
            let failed: usize = b.iter().map(|x| x.1).sum();
            let total: usize = b.iter().map(|x| x.2).sum();
            let _ = writeln!(
                out,
                "| `{name}` | {:.0} | {:.0} | {:.0} | {} | {failed}/{total} |",
                median(&ms),
                min(&ms),
                max(&ms),
                ratio(crun.map(|c| median(&ms) / c))
            );
        }
        out.push('\n');
    }

    out.push_str(
        "## 4. Peak RSS\n\n`ru_maxrss` from `wait4(2)` of the runtime process: the largest \
         resident set of the process and of every descendant it waited for (each process \
         image counted on its own, not summed), over the warm runs. crun and runc fork \
         children (runc re-executes itself as `runc init`); `final` clones the container \
         process from itself.\n\n| runtime | median MiB | max MiB |\n|---|--:|--:|\n",
    );
    for name in d.names() {
        if let Some(s) = summarize(&d.warm, name) {
            let _ = writeln!(
                out,
                "| `{name}` | {} | {} |",
                mib(s.rss_median_kib),
                mib(s.rss_max_kib as f64)
            );
        }
    }
    out.push('\n');

    out.push_str("## 5. Cold build times\n\n");
    if cx.build_times.is_empty() {
        out.push_str("Not measured in this run (`cargo xtask bench --build-times`).\n\n");
    } else {
        out.push_str(
            "`cargo build` (dev profile) into an empty temporary target directory; crate \
             sources already downloaded.\n\n| what | seconds |\n|---|--:|\n",
        );
        for (what, s) in &cx.build_times {
            let _ = writeln!(out, "| {what} | {s:.1} |");
        }
        out.push('\n');
    }

    out.push_str("## Left behind\n\n");
    match (&d.clean, d.leaks.is_empty()) {
        (Some(what), true) => {
            let _ = writeln!(out, "Nothing: {what} are as before the run.");
        }
        _ => {
            for l in &d.leaks {
                let _ = writeln!(out, "- LEAK: {l}");
            }
        }
    }
    let _ = writeln!(out, "Host mount table: {}.\n", cx.host_mounts);

    out.push_str(&targets(d));
    out
}

/// Issue 7's targets against this run.
pub fn targets(d: &Data) -> String {
    let mut out =
        String::from("## Targets (issue 7)\n\n| target | this run | met |\n|---|--:|:-:|\n");
    let mut row = |what: &str, value: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| {
        let (v, met) = match value {
            Some(v) if v.is_finite() => (format!("{v:.2}{unit}"), if ok(v) { "yes" } else { "no" }),
            _ => ("n/a".to_string(), "n/a"),
        };
        let _ = writeln!(out, "| {what} | {v} | {met} |");
    };
    let warm = summarize(&d.warm, "final");
    row(
        "`final run` warm ≤ 0.35× crun (paired)",
        warm.and_then(|s| s.paired),
        "×",
        &|v| v <= 0.35,
    );
    row(
        "`final run` after idle < 1× crun (paired)",
        summarize(&d.idle, "final").and_then(|s| s.paired),
        "×",
        &|v| v < 1.0,
    );
    row(
        "`final run` peak RSS ≤ 3 MiB (median)",
        warm.map(|s| s.rss_median_kib / 1024.0),
        " MiB",
        &|v| v <= 3.0,
    );
    for name in d.names().filter(|n| n.starts_with("step")) {
        row(
            &format!("`{name}` ≤ 0.25× crun (paired)"),
            summarize(&d.warm, name).and_then(|s| s.paired),
            "×",
            &|v| v <= 0.25,
        );
    }
    let conc = |n: &str| {
        d.conc
            .get(n)
            .map(|b| median(&b.iter().map(|x| x.0).collect::<Vec<_>>()))
    };
    row(
        "concurrent `final run` ≤ 0.4× crun (wall)",
        conc("final").zip(conc("crun")).map(|(f, c)| f / c),
        "×",
        &|v| v <= 0.4,
    );
    let _ = writeln!(
        out,
        "| nothing left behind | {} | {} |",
        if d.leaks.is_empty() { "clean" } else { "leaks" },
        if d.leaks.is_empty() && d.clean.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    out
}

/// A horizontal bar chart of the warm and after-idle medians, as a standalone SVG.
pub fn svg(d: &Data) -> String {
    let rows: Vec<(&str, Option<Summary>, Option<Summary>)> = d
        .names()
        .map(|n| (n, summarize(&d.warm, n), summarize(&d.idle, n)))
        .collect();
    let top = rows
        .iter()
        .flat_map(|(_, w, i)| [w.map(|s| s.median), i.map(|s| s.median)])
        .flatten()
        .fold(1.0, f64::max);
    let (label_w, bar_w, row_h, head) = (170.0, 480.0, 34.0, 46.0);
    let width = label_w + bar_w + 90.0;
    let height = head + row_h * rows.len() as f64 + 20.0;
    let x = |ms: f64| ms / top * bar_w;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Start to exit of `true` \
         (median ms; lower is better)</text>\n\
         <rect x=\"10\" y=\"28\" width=\"10\" height=\"10\" fill=\"#3b75af\"/>\
         <text x=\"24\" y=\"37\">warm (back to back)</text>\n\
         <rect x=\"160\" y=\"28\" width=\"10\" height=\"10\" fill=\"#ef8636\"/>\
         <text x=\"174\" y=\"37\">after ~1 s idle</text>\n"
    );
    for (i, (name, warm, idle)) in rows.iter().enumerate() {
        let y = head + row_h * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{name}</text>",
            label_w - 8.0,
            y + 15.0
        );
        for (k, (sum, colour)) in [(warm, "#3b75af"), (idle, "#ef8636")].iter().enumerate() {
            if let Some(sm) = sum {
                let by = y + 2.0 + 14.0 * k as f64;
                let _ = writeln!(
                    s,
                    "<rect x=\"{label_w}\" y=\"{by}\" width=\"{:.1}\" height=\"12\" fill=\"{colour}\"/>\
                     <text x=\"{:.1}\" y=\"{}\">{:.1}</text>",
                    x(sm.median).max(1.0),
                    label_w + x(sm.median).max(1.0) + 4.0,
                    by + 10.0,
                    sm.median
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_paired_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let text = "variant\tcrun\tw\tc\nvariant\tfinal\tw\tc\n\
                    warm\tcrun\t0\t10\t3000\t1\tok\nwarm\tfinal\t0\t5\t2000\t1\tok\n\
                    warm\tcrun\t1\t20\t3000\t1\tok\nwarm\tfinal\t1\t2\t2000\t1\tfailed\n";
        let d = Data::parse(text);
        let s = summarize(&d.warm, "final").unwrap();
        assert_eq!(s.median, 3.5);
        assert_eq!(s.failed, 1);
        // Paired: median of 0.5 and 0.1; medians: 3.5 / 15.
        assert!((s.paired.unwrap() - 0.3).abs() < 1e-9);
        assert!((s.ratio.unwrap() - 3.5 / 15.0).abs() < 1e-9);
        assert!(svg(&d).starts_with("<svg"));
        assert!(targets(&d).contains("| `final run` warm ≤ 0.35× crun (paired) | 0.30× | yes |"));
    }
}
