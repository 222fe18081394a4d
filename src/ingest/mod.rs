//! The ingest pipeline: generate queries → encode passages and queries → fuse, as
//! overlapping stages joined by bounded channels. The writer stores the result in one
//! transaction.

use crate::error::{Error, Result};
use crate::model::{Encoder, GenerationRequest, Generator, Sampling};
use crate::types::Passage;
use crate::xqg::{dedup_queries, Augmentation, XqgProfile};
use std::time::{Duration, Instant};

pub mod jsonl;
mod row;

pub use row::{Row, RowData, RowError, WriteMode};

/// Most queries one passage may bring (imported or generated).
pub const MAX_QUERIES_PER_PASSAGE: usize = 4096;
/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 << 10;

/// How far an ingest call has come; given to progress callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    /// Passages encoded (and augmented) so far.
    pub passages: usize,
    /// Passages in the call.
    pub total: usize,
    /// Queries generated or imported so far.
    pub queries: usize,
    /// Time since the call started.
    pub elapsed: Duration,
}

impl Progress {
    /// Passages per second so far.
    pub fn passages_per_second(&self) -> f64 {
        self.passages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Queries per second so far.
    pub fn queries_per_second(&self) -> f64 {
        self.queries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One passage to ingest, optionally with queries generated elsewhere (language, text).
#[derive(Clone, Debug)]
pub struct IngestItem {
    /// The passage.
    pub passage: Passage,
    /// Queries that came with it; `None` lets the index's profile decide.
    pub queries: Option<Vec<(String, String)>>,
}

impl From<Passage> for IngestItem {
    fn from(passage: Passage) -> Self {
        IngestItem {
            passage,
            queries: None,
        }
    }
}

/// What the pipeline hands to the writer for one passage.
pub(crate) struct Ingested {
    pub passage: Passage,
    pub vector: Vec<f32>,
    pub augmentation: Option<Augmentation>,
}

/// Checks imported queries; the error names the passage.
pub(crate) fn check_queries(id: &str, queries: &[(String, String)]) -> Result<()> {
    let bad = |reason: String| Error::InvalidPassage {
        id: id.to_string(),
        reason,
    };
    if queries.len() > MAX_QUERIES_PER_PASSAGE {
        return Err(bad(format!(
            "{} queries; the limit is {MAX_QUERIES_PER_PASSAGE}",
            queries.len()
        )));
    }
    for (lang, text) in queries {
        if crate::xqg::TargetLanguage::parse(&format!("{lang}=x")).is_err() {
            return Err(bad(format!("query language {lang:?} is not a valid code")));
        }
        if text.trim().is_empty() {
            return Err(bad(format!("a {lang} query is empty")));
        }
        if text.len() > MAX_QUERY_BYTES {
            return Err(bad(format!(
                "a {lang} query has {} bytes; the limit is {MAX_QUERY_BYTES}",
                text.len()
            )));
        }
    }
    Ok(())
}

/// The seed of one sampled row: the profile's seed, the passage id, the language and the
/// sample number (so a passage gets the same queries in any batch, on any thread).
pub(crate) fn row_seed(seed: u64, id: &str, lang: &str, sample: usize) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    h.update(id.as_bytes());
    h.update(&[0]);
    h.update(lang.as_bytes());
    h.update(&[0]);
    h.update(&(sample as u64).to_le_bytes());
    h.digest()
}

/// Generates the profile's queries for one passage: one prompt per language, `per_language`
/// samples each; repeated and empty queries are dropped.
pub fn generate_queries(
    generator: &Generator,
    profile: &XqgProfile,
    passage: &Passage,
) -> Result<Vec<(String, String)>> {
    Ok(generate_queries_batch(generator, profile, &[passage])?
        .pop()
        .expect("one passage in, one out"))
}

/// Generates the profile's queries for several passages in one call, so that the generator's
/// joint schedule decodes their rows together. Each passage gets exactly the queries
/// [`generate_queries`] gives it alone (seeds depend on the passage, not the batch). When
/// the batch fails, each passage is tried alone so that the error names the one at fault.
pub fn generate_queries_batch(
    generator: &Generator,
    profile: &XqgProfile,
    passages: &[&Passage],
) -> Result<Vec<Vec<(String, String)>>> {
    let n = profile.per_language;
    let mut prompts = Vec::with_capacity(passages.len() * profile.languages.len());
    let mut seeds = Vec::with_capacity(prompts.capacity());
    for passage in passages {
        for lang in &profile.languages {
            let text = profile.prompt_for(lang, passage.title.as_deref(), &passage.text);
            let ids = generator
                .tokenize(&text, profile.max_input_tokens)
                .map_err(|e| Error::InvalidPassage {
                    id: passage.id.clone(),
                    reason: format!("generation failed: {e}"),
                })?;
            prompts.push(ids);
            seeds.push(
                (0..n)
                    .map(|i| row_seed(profile.seed, &passage.id, &lang.code, i))
                    .collect::<Vec<u64>>(),
            );
        }
    }
    let sampling = Sampling {
        temperature: profile.temperature,
        top_k: profile.top_k,
        top_p: profile.top_p,
        max_length: profile.max_query_tokens,
    };
    let requests: Vec<GenerationRequest<'_>> = prompts
        .iter()
        .zip(&seeds)
        .map(|(p, s)| GenerationRequest {
            prompt: p,
            seeds: s,
        })
        .collect();
    let rows = match generator.generate(&requests, &sampling) {
        Ok(rows) => rows,
        Err(e) if passages.len() == 1 => {
            return Err(Error::InvalidPassage {
                id: passages[0].id.clone(),
                reason: format!("generation failed: {e}"),
            })
        }
        Err(_) => {
            return passages
                .iter()
                .map(|p| generate_queries(generator, profile, p))
                .collect()
        }
    };
    let langs = profile.languages.len();
    let mut out = Vec::with_capacity(passages.len());
    for passage_rows in rows.chunks(langs) {
        let mut queries = Vec::new();
        for (lang, lang_rows) in profile.languages.iter().zip(passage_rows) {
            let texts = lang_rows
                .iter()
                .map(|ids| generator.decode(ids))
                .collect::<Result<Vec<_>>>()?;
            queries.extend(
                dedup_queries(texts)
                    .into_iter()
                    .map(|t| (lang.code.clone(), t)),
            );
        }
        out.push(queries);
    }
    Ok(out)
}

/// What an index with `profile` computes for each passage on insert, computed without an
/// index: its queries, generated by `generator` (seeded by the profile's seed and the
/// passage id, so in any batch and on any machine the same), E(passage) and Σ E(query) by
/// `encoder`. A worker of a cluster job runs this and writes `generated_queries`,
/// `vec_passage`, `vec_query_sum` and `query_count` for `xqdb import`, which stores what
/// [`crate::Writer::insert_texts`] would have stored: the same queries, and with an fp32
/// encoder the same vectors (an int8 encoder that scales activations per batch gives vectors
/// that depend on which passages share a batch, ~1e-2). The profile's `deferred` flag is
/// ignored; bad passages are errors naming them, as on insert.
///
/// ```no_run
/// use xqdb::{ingest::augment_passages, Encoder, Generator, GeneratorOptions};
/// use xqdb::{ModelBundle, Passage, XqgProfile};
/// # fn main() -> xqdb::Result<()> {
/// let encoder = Encoder::from_dir(ModelBundle::default_dir())?;
/// let generator = Generator::open("generator", &GeneratorOptions::default())?;
/// let rows = vec![Passage::new("p1", "Helsinki is the capital of Finland.")];
/// let out = augment_passages(&encoder, &generator, &XqgProfile::default(), rows, &|_| {})?;
/// println!("{:?}", out[0].1.queries);
/// # Ok(()) }
/// ```
pub fn augment_passages(
    encoder: &Encoder,
    generator: &Generator,
    profile: &XqgProfile,
    passages: Vec<Passage>,
    progress: &dyn Fn(&Progress),
) -> Result<Vec<(Passage, Augmentation)>> {
    profile.validate()?;
    let mut seen = std::collections::HashSet::new();
    for p in &passages {
        p.validate()?;
        if !seen.insert(p.id.as_str()) {
            return Err(Error::DuplicateId { id: p.id.clone() });
        }
    }
    let profile = XqgProfile {
        generator: Some(generator.fingerprint().to_string()),
        deferred: false,
        ..profile.clone()
    };
    let done = Pipeline {
        encoder,
        profile: Some(&profile),
        generator: Some(generator),
        progress,
    }
    .run(passages.into_iter().map(Into::into).collect())?;
    Ok(done
        .into_iter()
        .map(|d| (d.passage, d.augmentation.expect("a profile was given")))
        .collect())
}

/// Settings of one pipeline run.
pub(crate) struct Pipeline<'a> {
    pub encoder: &'a Encoder,
    pub profile: Option<&'a XqgProfile>,
    pub generator: Option<&'a Generator>,
    pub progress: &'a dyn Fn(&Progress),
}

/// Passages per pipeline chunk when queries are generated (generation of one chunk
/// overlaps encoding of the previous one).
const GENERATE_CHUNK: usize = 16;
/// Passages per chunk otherwise: large, so that the encoder sorts many texts by length and
/// fills its batches with little padding.
const ENCODE_CHUNK: usize = 1024;

fn needs_generation(profile: Option<&XqgProfile>, item: &IngestItem) -> bool {
    item.queries.is_none() && profile.is_some_and(|p| !p.deferred && p.generator.is_some())
}

impl Pipeline<'_> {
    /// Runs every stage; the results keep the input order.
    pub fn run(&self, items: Vec<IngestItem>) -> Result<Vec<Ingested>> {
        if let Some(item) = items.iter().find(|i| i.queries.is_some()) {
            if self.profile.is_none() {
                return Err(Error::InvalidPassage {
                    id: item.passage.id.clone(),
                    reason: "it comes with generated queries, but the index has no xQG profile \
                             (create it with one, e.g. `xqdb init --xqg`)"
                        .into(),
                });
            }
        }
        for item in &items {
            if let Some(q) = &item.queries {
                check_queries(&item.passage.id, q)?;
            }
        }
        let generate = items.iter().any(|i| needs_generation(self.profile, i));
        let generator = match (generate, self.generator) {
            (false, _) => None,
            (true, Some(g)) => Some(g),
            (true, None) => return Err(Error::NoGenerator),
        };
        let start = Instant::now();
        let total = items.len();
        let mut chunks: Vec<Vec<IngestItem>> = Vec::new();
        let mut it = items.into_iter().peekable();
        let chunk = if generate {
            GENERATE_CHUNK
        } else {
            ENCODE_CHUNK
        };
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(chunk).collect());
        }
        let mut out = Vec::with_capacity(total);
        let mut progress = Progress {
            total,
            ..Default::default()
        };
        let profile = self.profile;
        crossbeam::scope(|s| -> Result<()> {
            let (tx, rx) = crossbeam::channel::bounded::<Result<Vec<IngestItem>>>(2);
            s.spawn(move |_| {
                for mut chunk in chunks {
                    let r = (|| -> Result<Vec<IngestItem>> {
                        let todo: Vec<usize> = (0..chunk.len())
                            .filter(|&i| needs_generation(profile, &chunk[i]))
                            .collect();
                        if !todo.is_empty() {
                            let g = generator.expect("checked above");
                            let p = profile.expect("needs a profile");
                            let passages: Vec<&Passage> =
                                todo.iter().map(|&i| &chunk[i].passage).collect();
                            let queries = generate_queries_batch(g, p, &passages)?;
                            for (&i, q) in todo.iter().zip(queries) {
                                chunk[i].queries = Some(q);
                            }
                        }
                        Ok(chunk)
                    })();
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
            for chunk in rx {
                let chunk = chunk?;
                let done = self.encode_chunk(chunk)?;
                progress.passages += done.len();
                progress.queries += done
                    .iter()
                    .map(|d| d.augmentation.as_ref().map_or(0, |a| a.queries.len()))
                    .sum::<usize>();
                progress.elapsed = start.elapsed();
                (self.progress)(&progress);
                out.extend(done);
            }
            Ok(())
        })
        .expect("ingest threads panicked")?;
        Ok(out)
    }

    fn encode_chunk(&self, chunk: Vec<IngestItem>) -> Result<Vec<Ingested>> {
        let texts: Vec<String> = chunk.iter().map(|i| encoder_input(&i.passage)).collect();
        let vectors = self.encoder.encode_passages(&texts)?;
        let query_texts: Vec<&str> = chunk
            .iter()
            .flat_map(|i| i.queries.iter().flatten().map(|(_, t)| t.as_str()))
            .collect();
        let query_vectors = self.encoder.encode_queries(&query_texts)?;
        let mut qv = query_vectors.into_iter();
        let mut out = Vec::with_capacity(chunk.len());
        for (item, e_p) in chunk.into_iter().zip(vectors) {
            let Some(profile) = self.profile else {
                out.push(Ingested {
                    passage: item.passage,
                    vector: e_p,
                    augmentation: None,
                });
                continue;
            };
            let augmentation = match item.queries {
                None if profile.deferred => Augmentation::pending(e_p),
                queries => {
                    let queries = queries.unwrap_or_default();
                    let vs: Vec<Vec<f32>> = qv.by_ref().take(queries.len()).collect();
                    Augmentation::new(e_p, queries, &vs, profile.store_query_vectors)
                }
            };
            out.push(Ingested {
                passage: item.passage,
                vector: augmentation.fused(profile.alpha, profile.normalize),
                augmentation: Some(augmentation),
            });
        }
        Ok(out)
    }
}

/// Refuses rows the encoder would read only in part: a row to be encoded (no vector, no xQG
/// record) whose title and text, with the passage prefix, are longer than the model's
/// passage limit. The error names the row and the limit; nothing is cut silently.
/// `xqdb add`, `POST /passages` and import call it before staging (synced documents are
/// cut to fit by `documents::sync`).
pub fn check_fits(encoder: &Encoder, rows: &[Row]) -> std::result::Result<(), RowError> {
    for (i, row) in rows.iter().enumerate() {
        if !matches!(row.data, RowData::Text | RowData::Queries(_)) {
            continue;
        }
        let fits = encoder
            .passage_fits(&encoder_input(&row.passage))
            .map_err(|error| RowError {
                row: Some(i),
                error,
            })?;
        if !fits {
            return Err(RowError {
                row: Some(i),
                error: Error::InvalidPassage {
                    id: row.passage.id.clone(),
                    reason: format!(
                        "the text is longer than the {} tokens the model reads (the rest would \
                         be ignored); cut it into several passages, or index its file with \
                         `xqdb sync`, which cuts files to fit",
                        encoder.max_passage_tokens()
                    ),
                },
            });
        }
    }
    Ok(())
}

/// What the encoder reads of a passage: its title (when it has one) and its text.
pub(crate) fn encoder_input(p: &Passage) -> String {
    match &p.title {
        Some(t) if !t.is_empty() => format!("{t} {}", p.text),
        _ => p.text.clone(),
    }
}
