//! Everything the CLI prints: the JSON document of `--json`, the human-readable form of the
//! same document, tables, hit lists and progress bars.

use crate::common::CliResult;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::process::ExitCode;
use xqdb::eval::RankMetrics;

/// Prints a command's result (one JSON document with `--json`, text otherwise) and turns it
/// into the exit status. Errors go to stderr, and with `--json` also to stdout as
/// `{"error": "..."}`.
/// Numbers that came from an `f32` printed as the `f32` reads (`1.2`, not `1.2000000476837158`):
/// every number exactly representable as an f32 takes the f32's shortest decimal form.
pub(crate) fn f32_tidy(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if !n.is_i64() && !n.is_u64() && (x as f32) as f64 == x => {
                let short: f64 = format!("{}", x as f32).parse().unwrap_or(x);
                json!(short)
            }
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(f32_tidy).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, f32_tidy(v))).collect()),
        other => other,
    }
}

/// A command line clap refused: with `--json` anywhere on it, the message also goes to stdout as
/// `{"error": …}`; help and version requests print as clap prints them.
pub(crate) fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || !std::env::args_os().any(|a| a == "--json")
    {
        e.exit();
    }
    let text = e.render().to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    println!("{}", json!({ "error": message }));
    eprint!("{text}");
    ExitCode::from(2)
}

pub(crate) fn finish(result: CliResult, json_out: bool) -> ExitCode {
    match result {
        Ok(Value::Null) => ExitCode::SUCCESS,
        Ok(v) => {
            if json_out {
                println!("{v}");
            } else {
                print_human(&v);
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            if json_out {
                println!("{}", json!({ "error": msg }));
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn print_human(v: &Value) {
    if let Some(files) = v.get("files").and_then(Value::as_array) {
        // Each file's best passage, shown with the file's score.
        let hits: Vec<Value> = files
            .iter()
            .map(|f| {
                let mut h = f["best"].clone();
                h["score"] = f["score"].clone();
                h
            })
            .collect();
        print_hits(&hits);
        return;
    }
    if let Some(hits) = v.get("hits").and_then(Value::as_array) {
        print_hits(hits);
        return;
    }
    if let Some(results) = v.get("results").and_then(Value::as_array) {
        for (qi, hits) in results.iter().enumerate() {
            println!("query {qi}:");
            print_hits(hits.as_array().map_or(&[], Vec::as_slice));
        }
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                match val {
                    Value::String(s) => println!("{k}: {s}"),
                    other => println!("{k}: {other}"),
                }
            }
        }
        other => println!("{other}"),
    }
}

fn print_hits(hits: &[Value]) {
    if hits.is_empty() {
        println!("no hits");
    }
    for (rank, h) in hits.iter().enumerate() {
        if let (Some(loc), Some(snippet)) = (h["location"].as_str(), h["snippet"].as_str()) {
            println!(
                "{:>3}. {:.4}  {loc}\n       {}",
                rank + 1,
                h["score"].as_f64().unwrap_or(0.0),
                for_terminal(snippet)
            );
            continue;
        }
        // A keyword hit shows its snippet (matched words marked), others their text.
        let text = match h["snippet"].as_str() {
            Some(snippet) => for_terminal(snippet),
            None => h["text"].as_str().unwrap_or("").to_string(),
        };
        let short: String = if h["snippet"].is_string() {
            text
        } else {
            text.chars().take(100).collect()
        };
        println!(
            "{:>3}. {:.4}  {}  {}",
            rank + 1,
            h["score"].as_f64().unwrap_or(0.0),
            h["id"].as_str().unwrap_or(""),
            short
        );
    }
}

/// A snippet's HTML (`<mark>…</mark>` around matched words, `&lt;`-style escapes) as
/// terminal text: marks in bold on a terminal, in `[…]` otherwise; escapes decoded.
fn for_terminal(snippet: &str) -> String {
    use std::io::IsTerminal;
    let (open, close) = if std::io::stdout().is_terminal() {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("[", "]")
    };
    snippet
        .replace("<mark>", open)
        .replace("</mark>", close)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Commands that print their own tables return their JSON only when asked for it.
pub(crate) fn quiet_unless(json: bool, r: CliResult) -> CliResult {
    r.map(|v| if json { v } else { Value::Null })
}

pub(crate) fn metrics_table(
    title: &str,
    per_lang: &std::collections::BTreeMap<String, RankMetrics>,
) {
    eprintln!("{title}");
    eprintln!(
        "{:<8} {:>7} {:>7} {:>7} {:>7}",
        "lang", "n", "R@1", "R@10", "MRR@10"
    );
    for (lang, m) in per_lang {
        eprintln!(
            "{lang:<8} {:>7} {:>7.4} {:>7.4} {:>7.4}",
            m.queries, m.recall_at_1, m.recall_at_10, m.mrr_at_10
        );
    }
    let avg = RankMetrics::macro_average(per_lang.values());
    eprintln!(
        "{:<8} {:>7} {:>7.4} {:>7.4} {:>7.4}",
        "average", avg.queries, avg.recall_at_1, avg.recall_at_10, avg.mrr_at_10
    );
}

pub(crate) fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}");
    b.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    b
}
