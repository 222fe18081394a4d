//! Microbenchmarks of the scoring kernels, one per storage type a scan reads: f32 (SIMD and the
//! plain-Rust reference), f16, i8, i8 codes, 1-bit codes, and the 32-query batch tile (on CPUs
//! with AVX-512F). Each iteration scores every row once, so throughput is rows per second.
//! `cargo bench --bench kernels` (criterion; `XQDB_KERNEL_ROWS` changes the row count).
//! The end-to-end figures (1M rows, threads, top-k, two-stage searches) are `--bench scan`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use xqdb::microbench::KernelBench;

const DIM: usize = 384;

fn kernels(c: &mut Criterion) {
    let rows = std::env::var("XQDB_KERNEL_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32_768);
    let mut bench = KernelBench::new(rows, DIM, 42);
    let mut group = c.benchmark_group(format!("kernels/{rows}x{DIM}"));
    group.throughput(Throughput::Elements(bench.rows() as u64));
    group.bench_function("f32", |b| b.iter(|| black_box(bench.f32())));
    group.bench_function("f32 scalar", |b| b.iter(|| black_box(bench.f32_scalar())));
    group.bench_function("f16", |b| b.iter(|| black_box(bench.f16())));
    group.bench_function("i8", |b| b.iter(|| black_box(bench.i8())));
    group.bench_function("i8 codes", |b| b.iter(|| black_box(bench.codes8())));
    group.bench_function("1-bit codes", |b| b.iter(|| black_box(bench.bits())));
    if bench.tile().is_some() {
        group.throughput(Throughput::Elements(32 * bench.rows() as u64));
        group.bench_function("f32 tile, 32 queries", |b| {
            b.iter(|| black_box(bench.tile()))
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
