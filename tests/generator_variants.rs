//! Faster generator folders and the joint schedule, on the tiny T5 and mT5 test models in
//! both ONNX layouts: a target vocabulary (masked), the trimmed output projection, int8, and
//! joint decoding against one prompt at a time. The variants are made here by the scripts a
//! user runs (`scripts/make_target_vocab.py`, `scripts/optimize_generator.py`) with the set-up
//! venv, so the scripts are tested too. Needs `make setup`.

#[path = "common/generator_scripts.rs"]
mod generator_scripts;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xqdb::model::{
    DecoderLayout, GenerationRequest, Generator, GeneratorOptions, Sampling, Schedule,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/seq2seq")
}

/// Variants of both fixture models, made once per test process: `{model}-{variant}` for
/// variant in mask, trim, int8, trim-int8, share (shared cross-attention), inplace (the
/// self-attention cache appended in place), share-inplace, and combined (what `make
/// generator` makes: all of them); the vocabulary holds the Japanese and Korean pieces.
fn variants() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let vocab = dir.path().join("vocab.json");
        generator_scripts::make_target_vocab(
            &fixtures().join("mt5"),
            &vocab,
            &["--languages", "ja,ko", "--no-english"],
        );
        for model in ["t5", "mt5"] {
            for (variant, flags) in [
                ("mask", &["--vocab"][..]),
                ("trim", &["--vocab", "--trim"][..]),
                ("int8", &["--int8"][..]),
                ("trim-int8", &["--vocab", "--trim", "--int8"][..]),
                ("share", &["--shared-cross-attention"][..]),
                ("inplace", &["--in-place-cache"][..]),
                (
                    "share-inplace",
                    &["--shared-cross-attention", "--in-place-cache"][..],
                ),
                (
                    "combined",
                    &[
                        "--vocab",
                        "--trim",
                        "--int8",
                        "--shared-cross-attention",
                        "--in-place-cache",
                    ][..],
                ),
            ] {
                generator_scripts::optimize_generator(
                    &fixtures().join(model),
                    &dir.path().join(format!("{model}-{variant}")),
                    &vocab,
                    flags,
                );
            }
        }
        dir
    })
    .path()
}

fn open_with(dir: &Path, layout: DecoderLayout, options: GeneratorOptions) -> Generator {
    Generator::open(
        dir,
        &GeneratorOptions {
            layout: Some(layout),
            ..options
        },
    )
    .unwrap()
}

/// The split layout on the joint schedule with `threads` × `workers`, waves of `max_rows`.
fn joint_split(dir: &Path, threads: usize, workers: usize, max_rows: usize) -> Generator {
    open_with(
        dir,
        DecoderLayout::Split,
        GeneratorOptions {
            threads,
            workers,
            schedule: Schedule::Joint { max_rows },
            ..Default::default()
        },
    )
}

fn one_thread(schedule: Schedule) -> GeneratorOptions {
    GeneratorOptions {
        threads: 1,
        schedule,
        ..Default::default()
    }
}

const LAYOUTS: [DecoderLayout; 2] = [DecoderLayout::Split, DecoderLayout::Merged];
const JOINT: Schedule = Schedule::Joint { max_rows: 64 };

const PROMPTS: [&str; 5] = [
    "Generate a Telugu question for this passage: Helsinki is the capital of Finland.",
    "Generate a Japanese question for this passage: The translation domain used by gettext, and the name of the file that holds it",
    "Generate an Arabic question for this passage: مجال الترجمة",
    "Generate a Korean question for this passage: gettext가 사용하는 번역 도메인",
    "x",
];

fn sampling() -> Sampling {
    Sampling {
        temperature: 1.5,
        top_k: 5,
        top_p: 1.0,
        max_length: 14,
    }
}

fn prompts(g: &Generator) -> Vec<Vec<u32>> {
    PROMPTS.iter().map(|p| g.tokenize(p, 64).unwrap()).collect()
}

fn vocab_ids() -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(variants().join("mt5-trim/target_vocab.json")).unwrap(),
    )
    .unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn trimmed_projection_samples_exactly_what_the_masked_full_model_samples() {
    let kept = vocab_ids();
    assert!(kept.len() < 600, "the test vocabulary keeps {}", kept.len());
    for model in ["t5", "mt5"] {
        for layout in LAYOUTS {
            let full = open_with(&fixtures().join(model), layout, one_thread(JOINT));
            let masked = open_with(
                &variants().join(format!("{model}-mask")),
                layout,
                one_thread(JOINT),
            );
            let trimmed = open_with(
                &variants().join(format!("{model}-trim")),
                layout,
                one_thread(JOINT),
            );
            let unmasked = open_with(
                &variants().join(format!("{model}-mask")),
                layout,
                GeneratorOptions {
                    target_vocab: false,
                    ..one_thread(JOINT)
                },
            );
            assert_ne!(masked.fingerprint(), unmasked.fingerprint());
            assert_ne!(masked.fingerprint(), trimmed.fingerprint());
            let ps = prompts(&full);
            let seeds: Vec<u64> = (0..ps.len() as u64 * 6).collect();
            let a = masked.generate_ids(&ps, 6, &sampling(), &seeds).unwrap();
            let b = trimmed.generate_ids(&ps, 6, &sampling(), &seeds).unwrap();
            assert_eq!(
                a, b,
                "{model} {layout:?}: trimmed and masked samples differ"
            );
            assert!(
                a.iter().flatten().all(|t| kept.binary_search(t).is_ok()),
                "{model} {layout:?}: a masked sample left the vocabulary"
            );
            // Without the vocabulary the same seeds leave it: the mask did something.
            let c = unmasked.generate_ids(&ps, 6, &sampling(), &seeds).unwrap();
            let d = full.generate_ids(&ps, 6, &sampling(), &seeds).unwrap();
            assert_eq!(
                c, d,
                "{model} {layout:?}: target_vocab false is the plain model"
            );
            assert!(
                c.iter().flatten().any(|t| kept.binary_search(t).is_err()),
                "{model} {layout:?}: the plain model never left the vocabulary"
            );
            // Teacher-forced rows are equal too, bit for bit, -inf outside the vocabulary.
            for (p, seq) in ps.iter().zip(a.iter().step_by(6)) {
                let lm = masked.target_logits(p, seq).unwrap();
                let lt = trimmed.target_logits(p, seq).unwrap();
                assert_eq!(lm, lt, "{model} {layout:?}");
                let lf = full.target_logits(p, seq).unwrap();
                for (rm, rf) in lm.iter().zip(&lf) {
                    for (i, (&m, &f)) in rm.iter().zip(rf).enumerate() {
                        let inside = kept.binary_search(&(i as u32)).is_ok();
                        assert!(if inside {
                            m == f
                        } else {
                            m == f32::NEG_INFINITY
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn the_joint_schedule_samples_what_one_prompt_at_a_time_samples() {
    let max_length = 20;
    let s = Sampling {
        max_length,
        ..sampling()
    };
    // The plain models and their int8 variants (activations quantised per row, so a row's
    // result does not depend on the batch either).
    for (model, dir) in ["t5", "mt5"].into_iter().flat_map(|m| {
        [
            (m, fixtures().join(m)),
            (m, variants().join(format!("{m}-int8"))),
        ]
    }) {
        for layout in LAYOUTS {
            let alone = open_with(&dir, layout, one_thread(Schedule::Lockstep));
            let ps = prompts(&alone);
            // Requests with different sample counts and seeds.
            let seeds: Vec<Vec<u64>> = (0..ps.len())
                .map(|i| (0..(3 + i as u64)).map(|j| 1000 * i as u64 + j).collect())
                .collect();
            let want: Vec<Vec<Vec<u32>>> = ps
                .iter()
                .zip(&seeds)
                .map(|(p, sd)| {
                    alone
                        .generate(
                            &[GenerationRequest {
                                prompt: p,
                                seeds: sd,
                            }],
                            &s,
                        )
                        .unwrap()
                        .remove(0)
                })
                .collect();
            let lens: Vec<usize> = want.iter().flatten().map(Vec::len).collect();
            if model == "mt5" && dir.starts_with(fixtures()) {
                // The mT5 fixture stops early often: finished rows leave the batch.
                assert!(lens.iter().any(|&l| l < 4), "{lens:?}");
                assert!(lens.iter().any(|&l| l >= 8), "{lens:?}");
            }
            let requests: Vec<GenerationRequest<'_>> = ps
                .iter()
                .zip(&seeds)
                .map(|(p, sd)| GenerationRequest {
                    prompt: p,
                    seeds: sd,
                })
                .collect();
            for (threads, workers, max_rows) in
                [(1, 1, 64), (2, 1, 64), (1, 1, 7), (2, 1, 1), (1, 2, 7)]
            {
                let joint = open_with(
                    &dir,
                    layout,
                    GeneratorOptions {
                        threads,
                        workers,
                        schedule: Schedule::Joint { max_rows },
                        ..Default::default()
                    },
                );
                let got = joint.generate(&requests, &s).unwrap();
                assert_eq!(
                    got, want,
                    "{model} {layout:?}: {threads} threads × {workers} workers, waves of {max_rows} rows"
                );
                // Reversed order, in one wave: each request still gets its own rows.
                let rev: Vec<GenerationRequest<'_>> = requests.iter().rev().copied().collect();
                let mut got = joint.generate(&rev, &s).unwrap();
                got.reverse();
                assert_eq!(got, want, "{model} {layout:?}: reversed");
            }
        }
    }
}

#[test]
fn many_rows_sampled_on_two_threads_are_the_rows_of_one_thread() {
    // 300 rows × 1,000 logits: enough for the step's sampling to be split across threads.
    let s = Sampling {
        max_length: 6,
        ..sampling()
    };
    for layout in LAYOUTS {
        let dir = fixtures().join("mt5");
        let one = open_with(&dir, layout, one_thread(Schedule::Lockstep));
        let p = one.tokenize(PROMPTS[1], 64).unwrap();
        let seeds: Vec<u64> = (0..300).collect();
        let want = one
            .generate_ids(std::slice::from_ref(&p), 300, &s, &seeds)
            .unwrap();
        let two = open_with(
            &dir,
            layout,
            GeneratorOptions {
                threads: 2,
                schedule: Schedule::Joint { max_rows: 300 },
                ..Default::default()
            },
        );
        let got = two
            .generate_ids(std::slice::from_ref(&p), 300, &s, &seeds)
            .unwrap();
        assert_eq!(got, want, "{layout:?}");
        let distinct: std::collections::HashSet<&Vec<u32>> = got.iter().collect();
        assert!(distinct.len() > 50, "{} distinct rows", distinct.len());
    }
}

#[test]
fn rewritten_decoders_are_deterministic_per_prompt_and_close_to_the_plain_graph() {
    // Up to 19 new tokens: an in-place cache grows twice (8 and 16 positions).
    let s = Sampling {
        max_length: 20,
        ..sampling()
    };
    for variant in ["share", "inplace", "share-inplace"] {
        rewritten_decoder_is_deterministic_and_close(variant, &s);
    }
    // What `make generator` makes: the same determinism; closeness is int8's (below).
    let kept = vocab_ids();
    for model in ["t5", "mt5"] {
        let dir = variants().join(format!("{model}-combined"));
        let ps = prompts(&open_with(
            &dir,
            DecoderLayout::Split,
            one_thread(Schedule::Lockstep),
        ));
        let seeds: Vec<u64> = (0..ps.len() as u64 * 5).collect();
        let alone = open_with(
            &dir,
            DecoderLayout::Split,
            one_thread(Schedule::Joint { max_rows: 1 }),
        );
        let want = alone.generate_ids(&ps, 5, &s, &seeds).unwrap();
        assert!(want.iter().flatten().all(|t| kept.binary_search(t).is_ok()));
        assert!(
            want.iter().any(|r| r.len() > 8),
            "{model}: no row grew the cache"
        );
        for (threads, workers, max_rows) in [(2, 1, 64), (1, 2, 10)] {
            let g = joint_split(&dir, threads, workers, max_rows);
            assert_eq!(
                g.generate_ids(&ps, 5, &s, &seeds).unwrap(),
                want,
                "{model} combined: {threads} threads × {workers} workers, waves of {max_rows}"
            );
        }
    }
}

fn rewritten_decoder_is_deterministic_and_close(variant: &str, s: &Sampling) {
    let s = *s;
    let (mut same_rows, mut rows_total) = (0, 0);
    for model in ["t5", "mt5"] {
        let dir = variants().join(format!("{model}-{variant}"));
        let plain = open_with(
            &fixtures().join(model),
            DecoderLayout::Split,
            one_thread(Schedule::Lockstep),
        );
        let ps = prompts(&plain);
        let seeds: Vec<Vec<u64>> = (0..ps.len())
            .map(|i| (0..(3 + i as u64)).map(|j| 1000 * i as u64 + j).collect())
            .collect();
        let requests: Vec<GenerationRequest<'_>> = ps
            .iter()
            .zip(&seeds)
            .map(|(p, sd)| GenerationRequest {
                prompt: p,
                seeds: sd,
            })
            .collect();
        // One prompt per wave is the reference; any wave size, thread and worker count
        // gives the same rows.
        let alone = open_with(
            &dir,
            DecoderLayout::Split,
            one_thread(Schedule::Joint { max_rows: 1 }),
        );
        let want = alone.generate(&requests, &s).unwrap();
        for (threads, workers, max_rows) in [(1, 1, 64), (2, 1, 64), (1, 2, 8)] {
            let g = joint_split(&dir, threads, workers, max_rows);
            assert_eq!(
                g.generate(&requests, &s).unwrap(),
                want,
                "{model}: {threads} threads × {workers} workers, waves of {max_rows}"
            );
            let rev: Vec<GenerationRequest<'_>> = requests.iter().rev().copied().collect();
            let mut got = g.generate(&rev, &s).unwrap();
            got.reverse();
            assert_eq!(got, want, "{model}: reversed");
        }
        // Against the plain graph the logits differ only by rounding (the products of the
        // samples' queries with one copy of the keys run as one matrix product): nearly every
        // row is the same.
        let reference = plain.generate(&requests, &s).unwrap();
        for (a, b) in want.iter().flatten().zip(reference.iter().flatten()) {
            same_rows += (a == b) as usize;
            rows_total += 1;
        }
        // Every row in one padded batch from the first step (the other decoding loop).
        let lockstep = open_with(&dir, DecoderLayout::Split, one_thread(Schedule::Lockstep))
            .generate(&requests, &s)
            .unwrap();
        for (a, b) in lockstep.iter().flatten().zip(reference.iter().flatten()) {
            same_rows += (a == b) as usize;
            rows_total += 1;
        }
        // Teacher-forced on the plain graph's own samples, the shared graph's logits are
        // within rounding (the first step is the plain decoder in both).
        let shared = open_with(&dir, DecoderLayout::Split, one_thread(JOINT));
        for (p, seq) in ps.iter().zip(reference.iter().map(|r| &r[0])) {
            let a = plain.target_logits(p, seq).unwrap();
            let b = shared.target_logits(p, seq).unwrap();
            assert_eq!(
                a, b,
                "{model}: teacher forcing runs the first-step decoder in both"
            );
        }
    }
    eprintln!("{variant}: {same_rows} of {rows_total} rows equal to the plain graph's");
    assert!(
        same_rows * 10 >= rows_total * 9,
        "{variant}: {same_rows} of {rows_total} rows equal"
    );
}

/// Teacher-forced agreement of a generator with the fp32 original on the original's own
/// samples: (share of positions where both rank the same piece first, mean |Δ log p| of the
/// sampled piece per token).
fn fidelity(reference: &Generator, other: &Generator) -> (f64, f64) {
    let ps = prompts(reference);
    let seeds: Vec<u64> = (0..ps.len() as u64 * 4).collect();
    let rows = reference.generate_ids(&ps, 4, &sampling(), &seeds).unwrap();
    let (mut same, mut n, mut diff) = (0usize, 0usize, 0f64);
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > r[b] { i } else { b })
    };
    let logp = |r: &[f32], t: usize| {
        let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + r.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        r[t] as f64 - lse
    };
    for (i, seq) in rows.iter().enumerate() {
        let p = &ps[i / 4];
        let a = reference.target_logits(p, seq).unwrap();
        let b = other.target_logits(p, seq).unwrap();
        for ((ra, rb), &t) in a.iter().zip(&b).zip(seq) {
            same += (argmax(ra) == argmax(rb)) as usize;
            diff += (logp(ra, t as usize) - logp(rb, t as usize)).abs();
            n += 1;
        }
    }
    (same as f64 / n as f64, diff / n as f64)
}

#[test]
fn int8_generators_stay_close_to_fp32_and_trimmed_int8_keeps_the_vocabulary() {
    let kept = vocab_ids();
    for model in ["t5", "mt5"] {
        for layout in LAYOUTS {
            let fp32 = open_with(&fixtures().join(model), layout, one_thread(JOINT));
            let int8 = open_with(
                &variants().join(format!("{model}-int8")),
                layout,
                one_thread(JOINT),
            );
            let (agree, dll) = fidelity(&fp32, &int8);
            eprintln!(
                "{model} {layout:?}: int8 top-1 agreement {agree:.4}, mean |Δ log p| {dll:.4}"
            );
            assert!(agree >= 0.9, "{model} {layout:?}: top-1 agreement {agree}");
            assert!(dll <= 0.15, "{model} {layout:?}: mean |Δ log p| {dll}");
            let both = open_with(
                &variants().join(format!("{model}-trim-int8")),
                layout,
                one_thread(JOINT),
            );
            let ps = prompts(&fp32);
            let seeds: Vec<u64> = (0..ps.len() as u64 * 3).collect();
            let rows = both.generate_ids(&ps, 3, &sampling(), &seeds).unwrap();
            assert!(rows.iter().flatten().all(|t| kept.binary_search(t).is_ok()));
            assert!(rows.iter().all(|r| !r.is_empty()));
        }
    }
}

#[test]
fn bad_generator_manifests_and_vocabularies_get_typed_errors() {
    let base = variants().join("mt5-trim");
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&base).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let manifest = dir.path().join("xqdb-generator.json");
    let vocab = dir.path().join("target_vocab.json");
    let good_manifest = std::fs::read_to_string(&manifest).unwrap();
    let good_vocab = std::fs::read_to_string(&vocab).unwrap();
    let open = || Generator::open(dir.path(), &GeneratorOptions::default());
    assert!(open().is_ok());
    let cases: Vec<(&Path, String, &str)> = vec![
        (
            &manifest,
            good_manifest.replace("\"version\": 1", "\"version\": 9"),
            "version 9",
        ),
        (
            &manifest,
            good_manifest.replace("trimmed", "sliced"),
            "not full or trimmed",
        ),
        (
            &manifest,
            good_manifest.replace("target_vocab.json", "../x.json"),
            "not a file name",
        ),
        (&manifest, "{".into(), "bad manifest"),
        (
            &manifest,
            good_manifest.replace("per_row", "per_sample"),
            "not per_row or per_prompt",
        ),
        (
            &manifest,
            good_manifest.replace("\"version\"", "\"decoder_cache\": \"ring\", \"version\""),
            "not concat or in_place",
        ),
        // A manifest that claims an in-place cache for a graph that concatenates.
        (
            &manifest,
            good_manifest.replace(
                "\"version\"",
                "\"decoder_cache\": \"in_place\", \"version\"",
            ),
            "graph has no input \"cache_length\"",
        ),
        (
            &vocab,
            good_vocab.replace("\"vocab_size\": 1000", "\"vocab_size\": 999"),
            "vocabulary of 999",
        ),
        (
            &vocab,
            good_vocab.replace("\"ids\": [0, 1,", "\"ids\": [1, 0,"),
            "ascending",
        ),
        (
            &vocab,
            good_vocab.replace("\"ids\": [0, 1,", "\"ids\": [0,"),
            "EOS (1)",
        ),
        (&vocab, "[]".into(), "bad JSON"),
    ];
    for (file, text, want) in cases {
        assert_ne!(
            text,
            if file == manifest.as_path() {
                &good_manifest
            } else {
                &good_vocab
            }[..],
            "the case for {want:?} changed nothing"
        );
        std::fs::write(file, &text).unwrap();
        let e = open().unwrap_err();
        assert!(matches!(e, xqdb::Error::Model { .. }), "{e}");
        assert!(e.to_string().contains(want), "{want:?} not in {e}");
        std::fs::write(&manifest, &good_manifest).unwrap();
        std::fs::write(&vocab, &good_vocab).unwrap();
    }
    std::fs::remove_file(&vocab).unwrap();
    let e = open().unwrap_err();
    assert!(e.to_string().contains("target_vocab.json"), "{e}");
    // A manifest that claims trimmed logits over a full-width graph: refused at the first step.
    std::fs::write(&vocab, &good_vocab).unwrap();
    for f in [
        "decoder_model.onnx",
        "decoder_with_past_model.onnx",
        "decoder_model_merged.onnx",
    ] {
        std::fs::copy(fixtures().join("mt5").join(f), dir.path().join(f)).unwrap();
    }
    let g = open().unwrap();
    let p = g.tokenize(PROMPTS[0], 64).unwrap();
    let e = g.generate_ids(&[p], 2, &sampling(), &[1, 2]).unwrap_err();
    assert!(e.to_string().contains("target vocabulary"), "{e}");
}
