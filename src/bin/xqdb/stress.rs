//! The hidden `stress-writer` command: the writer process the crash and multi-process tests
//! SIGKILL (deterministic batches, deletes, seals, automatic merges, re-fusions, compactions,
//! adapter steps; binary and i8 codes in every segment).

use crate::common::CliResult;
use clap::Args;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use xqdb::{Index, Metric, Passage};

#[derive(Args)]
pub(crate) struct StressWriterArgs {
    dir: PathBuf,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 8)]
    dim: usize,
    #[arg(long, default_value_t = 0)]
    first_batch: u64,
    #[arg(long, default_value_t = u64::MAX)]
    batches: u64,
}

pub(crate) fn run(a: StressWriterArgs) -> CliResult {
    let StressWriterArgs {
        dir,
        batch_size,
        dim,
        first_batch,
        batches,
    } = a;
    stress_writer(&dir, batch_size, dim, first_batch, batches).map_err(|e| e.to_string())?;
    Ok(Value::Null)
}

/// Deterministic vector of passage `n` (so a checker can recompute it).
fn stress_vector(n: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| (((n * 31 + j as u64 * 17) % 97) as f32 - 48.0) / 16.0)
        .collect()
}

/// The one generated-query vector of every stress passage (with α ∈ {0.5, 0.25} fusion is
/// exact in f32).
fn stress_query(dim: usize) -> Vec<f32> {
    (0..dim).map(|j| [1.0, -1.0, 0.5, 0.0][j % 4]).collect()
}

/// The stress writer's adapter after batch `b`: a diagonal of 1 + b/1000.
fn stress_adapter(b: u64, dim: usize) -> xqdb::distill::Adapter {
    let mut m = vec![0f32; dim * dim];
    for i in 0..dim {
        m[i * dim + i] = 1.0 + b as f32 / 1000.0;
    }
    xqdb::distill::Adapter::from_matrix(dim, m).expect("a finite square matrix")
}

fn stress_adapter_info(b: u64) -> xqdb::distill::AdapterInfo {
    xqdb::distill::AdapterInfo {
        teacher: "stress".into(),
        examples: b as usize,
        ..Default::default()
    }
}

/// After batch b: store adapter b, shared and for Finnish queries in one commit, when
/// b % 7 == 2; drop both when b % 7 == 0 and b / 7 is odd.
fn stress_adapter_step(w: &mut xqdb::Writer, b: u64, dim: usize) -> xqdb::Result<()> {
    if b % 7 == 2 {
        let fi = xqdb::distill::AdapterInfo {
            lang: Some("fi".into()),
            ..stress_adapter_info(b)
        };
        w.replace_adapters(&[
            (stress_adapter(b, dim), stress_adapter_info(b)),
            (stress_adapter(b, dim), fi),
        ])?;
    } else if b.is_multiple_of(7) && (b / 7) % 2 == 1 {
        w.drop_adapter()?;
    }
    Ok(())
}

/// Inserts batch after batch; each batch also deletes half of the batch before the
/// previous one, and every few batches the writer seals, re-fuses (α alternating between
/// 0.25 and 0.5) or compacts. Passages carry an xQG record (E(p) = the stress vector, one
/// query). After each commit returns it prints `committed B`.
fn stress_writer(
    dir: &Path,
    batch_size: usize,
    dim: usize,
    first: u64,
    batches: u64,
) -> xqdb::Result<()> {
    let index = Index::builder()
        .dim(dim)
        .metric(Metric::Dot)
        .seal_rows(batch_size * 3)
        .direct_segment_rows(batch_size * 2)
        .merge_fan_in(3)
        .codes(xqdb::Codes::parse("binary,i8")?)
        .lexical(xqdb::LexicalSettings::default())
        .xqg(xqdb::XqgProfile {
            alpha: 0.5,
            normalize: false,
            ..Default::default()
        })
        .open(dir)?;
    let query = stress_query(dim);
    let mut w = index.writer()?;
    let mut out = std::io::stdout().lock();
    // A killed predecessor may have committed batch first - 1 without its adapter step.
    if let Some(prev) = first.checked_sub(1) {
        stress_adapter_step(&mut w, prev, dim)?;
    }
    for b in first..first.saturating_add(batches) {
        let big = b % 5 == 4;
        let n = if big { batch_size * 2 } else { batch_size };
        for i in 0..n as u64 {
            let id = format!("b{b}-{i}");
            let p = Passage::new(&id, format!("passage {i} of batch {b}"))
                .with_meta(json!({ "batch": b }));
            let q = vec![("fi".to_string(), format!("kysymys {i}"))];
            let a = xqdb::Augmentation::new(
                stress_vector(b * 100_000 + i, dim),
                q,
                std::slice::from_ref(&query),
                false,
            );
            w.insert_augmented(p, a)?;
        }
        if b >= 2 {
            for i in (0..batch_size as u64).step_by(2) {
                w.delete(&format!("b{}-{i}", b - 2))?;
            }
        }
        let info = w.commit()?;
        writeln!(out, "committed {b}").ok();
        if info.merged {
            writeln!(out, "merged {b}").ok();
        }
        out.flush().ok();
        stress_adapter_step(&mut w, b, dim)?;
        match b % 7 {
            3 => {
                w.seal()?;
                writeln!(out, "sealed {b}").ok();
            }
            5 => {
                let alpha = if (b / 7) % 2 == 0 { 0.25 } else { 0.5 };
                w.re_fuse(alpha, false)?;
                writeln!(out, "re-fused {b}").ok();
            }
            6 => {
                w.compact()?;
                writeln!(out, "compacted {b}").ok();
            }
            _ => {}
        }
        out.flush().ok();
    }
    Ok(())
}
