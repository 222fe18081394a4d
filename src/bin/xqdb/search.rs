//! `xqdb search`: text or vector queries, filters, the query adapter and teacher reranking.

use crate::common::{err, open_index, CliResult};
use crate::distill::make_teacher;
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xqdb::{Filter, SearchOptions};

#[derive(Args)]
pub(crate) struct SearchArgs {
    dir: PathBuf,
    /// Query text, encoded by the index's model (or use --vector-file).
    text: Option<String>,
    /// Encoder model bundle, a folder or a name `xqdb models` lists (default: the one the index records).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A JSON array of numbers (one query) or one array per line (a batch).
    #[arg(long, conflicts_with = "text")]
    vector_file: Option<PathBuf>,
    /// Number of hits.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Only passages in these languages (repeat the flag or list them: `--lang en,ja`).
    #[arg(long = "lang", value_delimiter = ',')]
    langs: Vec<String>,
    /// Only passages whose metadata field equals a JSON value: FIELD=VALUE; a JSON array
    /// means any of its values (`topic=["food","tech"]`).
    #[arg(long = "meta")]
    meta: Vec<String>,
    /// Search text queries without the stored query adapter.
    #[arg(long)]
    no_adapter: bool,
    /// Rescore the dense top --rerank-depth with a teacher: `translation` (needs
    /// --parallel), `generator[:DIR]` (needs --query-lang) or `encoder:DIR`.
    #[arg(long)]
    rerank: Option<String>,
    /// How many dense hits the teacher rescores.
    #[arg(long, default_value_t = 20)]
    rerank_depth: usize,
    /// Teacher weight w: final = (1 - w)·z(dense) + w·z(teacher).
    #[arg(long, default_value_t = 0.5)]
    rerank_weight: f32,
    /// The query's language code: selects the query adapter of that language, if one is
    /// stored, and the stemmer of a stemming lexical index (without it, a text query's
    /// language is detected when the index has either), and names the language in the
    /// generator teacher's prompt.
    #[arg(long)]
    query_lang: Option<String>,
    /// A parallel (e.g. English) version of the query, for the translation teacher.
    #[arg(long)]
    parallel: Option<String>,
    /// Length-normalise the generator teacher's log-likelihood.
    #[arg(long)]
    length_normalize: bool,
    /// Snippet width (characters) for hits of synced documents.
    #[arg(long, default_value_t = 160)]
    width: usize,
    /// First pass: exact, i8 or binary (codes the index keeps; default: the index's).
    #[arg(long)]
    first_pass: Option<xqdb::FirstPass>,
    /// The first pass keeps k × N candidates, rescored exactly (default: the index's).
    #[arg(long)]
    oversample: Option<usize>,
    /// dense (vectors), lexical (BM25 keywords) or hybrid (both, fused); lexical and
    /// hybrid need an index with a lexical index (`init --lexical`, `xqdb lexical`).
    #[arg(long, default_value = "dense")]
    mode: xqdb::SearchMode,
    /// Hybrid fusion: weighted (normalised scores; the default) or rrf (reciprocal rank
    /// fusion).
    #[arg(long)]
    fusion: Option<String>,
    /// Weight of the lexical list (rrf: default 1; weighted: w in [0, 1], default `Fusion::weighted`'s).
    #[arg(long)]
    lexical_weight: Option<f32>,
    /// The rank constant of reciprocal rank fusion (default 60).
    #[arg(long)]
    rrf_k: Option<f32>,
    /// Candidates each list contributes to a hybrid search (default: max(k, 100)).
    #[arg(long)]
    depth: Option<usize>,
    /// Rank synced files instead of passages: each file once, with its best passage
    /// (`{"files": [{"path", "score", "passages", "best"}]}` with --json).
    #[arg(long)]
    by_file: bool,
}

/// The fusion the search flags describe.
pub(crate) fn fusion_of(
    kind: &str,
    lexical_weight: Option<f32>,
    rrf_k: f32,
) -> Result<xqdb::Fusion, String> {
    let fusion = match kind {
        "rrf" => xqdb::Fusion::Rrf {
            k: rrf_k,
            lexical_weight: lexical_weight.unwrap_or(1.0),
        },
        "weighted" => match lexical_weight {
            Some(w) => xqdb::Fusion::Weighted { lexical_weight: w },
            None => xqdb::Fusion::weighted(),
        },
        _ => return Err(format!("unknown fusion {kind:?} (rrf, weighted)")),
    };
    fusion.validate().map_err(err)?;
    Ok(fusion)
}

pub(crate) fn search(a: SearchArgs) -> CliResult {
    let SearchArgs {
        dir,
        text,
        model,
        vector_file,
        k,
        langs,
        meta,
        no_adapter,
        rerank,
        rerank_depth,
        rerank_weight,
        query_lang,
        parallel,
        length_normalize,
        width,
        first_pass,
        oversample,
        mode,
        fusion,
        lexical_weight,
        rrf_k,
        depth,
        by_file,
    } = a;
    if by_file && (vector_file.is_some() || rerank.is_some()) {
        return Err("--by-file works on text queries without --rerank".into());
    }
    let index = open_index(&dir, model.as_deref(), true)?;
    let mut filter = Filter::new();
    if !langs.is_empty() {
        let langs: Vec<String> = langs.iter().map(|l| l.trim().to_string()).collect();
        check_langs(&index, &langs)?;
        filter = filter.langs(langs);
    }
    for m in meta {
        let (field, value) = m
            .split_once('=')
            .ok_or_else(|| format!("--meta {m:?}: expected FIELD=VALUE"))?;
        let value: Value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        filter = match value {
            Value::Array(any_of) => filter.meta_in(field, any_of),
            value => filter.meta_eq(field, value),
        };
    }
    let mut options = SearchOptions::new(k).filter(filter).adapter(!no_adapter);
    options.first_pass = first_pass;
    options.oversample = oversample;
    options.mode = mode;
    if mode != xqdb::SearchMode::Hybrid
        && (fusion.is_some() || lexical_weight.is_some() || rrf_k.is_some() || depth.is_some())
    {
        return Err(
            "--fusion, --lexical-weight, --rrf-k and --depth shape a hybrid search; add --mode hybrid"
                .into(),
        );
    }
    options.fusion = fusion_of(
        fusion.as_deref().unwrap_or("weighted"),
        lexical_weight,
        rrf_k.unwrap_or(60.0),
    )?;
    options.depth = depth;
    if mode != xqdb::SearchMode::Dense && rerank.is_some() {
        return Err("--rerank works on dense searches".into());
    }
    options.query_lang = query_lang
        .clone()
        .or_else(|| detect_query_lang(&index, text.as_deref()));
    let hits = match (text, vector_file) {
        (_, Some(f)) => {
            if rerank.is_some() {
                return Err("--rerank needs a text query".into());
            }
            let (queries, batch) = read_vectors(&f)?;
            let hits = index.search_batch(&queries, &options).map_err(err)?;
            if batch {
                return Ok(json!({ "results": hits }));
            }
            hits
        }
        (Some(t), None) => match rerank {
            Some(spec) => {
                let teacher = make_teacher(&spec, &index, length_normalize)?;
                let query = xqdb::distill::TeacherQuery {
                    text: &t,
                    lang: query_lang.as_deref(),
                    parallel: parallel.as_deref(),
                };
                let r = xqdb::Rerank {
                    teacher: teacher.as_ref(),
                    depth: rerank_depth,
                    weight: rerank_weight,
                };
                vec![index
                    .search_text_reranked(&query, &options, &r)
                    .map_err(err)?]
            }
            None if by_file => return search_files(&index, &t, &options, width),
            None => {
                let hits = index.search_texts(&[&t], &options).map_err(err)?;
                let hits = hits.into_iter().next().unwrap_or_default();
                return Ok(json!({ "hits": with_snippets(&index, &t, hits, width)? }));
            }
        },
        (None, None) => return Err("give a query text or --vector-file".into()),
    };
    let hits: Vec<xqdb::Hit> = hits.into_iter().next().unwrap_or_default();
    Ok(json!({ "hits": hits }))
}

fn search_files(
    index: &xqdb::Index,
    query: &str,
    options: &SearchOptions,
    width: usize,
) -> crate::common::CliResult {
    let files = index
        .search_files(&[query], options, &Default::default())
        .map_err(err)?
        .pop()
        .unwrap_or_default();
    let (best, rest): (Vec<xqdb::Hit>, Vec<_>) = files
        .into_iter()
        .map(|f| (f.best, (f.path, f.score, f.passages)))
        .unzip();
    let best = with_snippets(index, query, best, width)?;
    let files: Vec<Value> = best
        .into_iter()
        .zip(rest)
        .map(|(hit, (path, score, passages))| {
            json!({ "path": path, "score": score, "passages": passages, "best": hit })
        })
        .collect();
    Ok(json!({ "files": files }))
}

#[cfg(feature = "documents")]
fn with_snippets(
    index: &xqdb::Index,
    query: &str,
    hits: Vec<xqdb::Hit>,
    width: usize,
) -> Result<Vec<Value>, String> {
    crate::sync::add_snippets(index, query, hits, width)
}

#[cfg(not(feature = "documents"))]
fn with_snippets(
    _: &xqdb::Index,
    _: &str,
    hits: Vec<xqdb::Hit>,
    _: usize,
) -> Result<Vec<Value>, String> {
    hits.iter()
        .map(|h| serde_json::to_value(h).map_err(|e| e.to_string()))
        .collect()
}

/// The queries of a vector file, and whether it is a batch (one array a line) rather than
/// one array.
fn read_vectors(path: &Path) -> Result<(Vec<Vec<f32>>, bool), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(one) = serde_json::from_str::<Vec<f32>>(&text) {
        return Ok((vec![one], false));
    }
    let batch = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Vec<f32>>(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect::<Result<_, _>>()?;
    Ok((batch, true))
}

/// Refuses a `--lang` that no passage of the index has (a filter that can only match
/// nothing), naming the languages it does have.
fn check_langs(index: &xqdb::Index, langs: &[String]) -> Result<(), String> {
    let present = index.snapshot().languages().map_err(err)?;
    let missing: Vec<&str> = langs
        .iter()
        .filter(|l| !present.iter().any(|(p, _)| p == *l))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let have: Vec<String> = present.iter().map(|(l, n)| format!("{l} ({n})")).collect();
    Err(format!(
        "no passage of the index has language {}; it has {}",
        missing.join(", "),
        if have.is_empty() {
            "no language tags (add passages with \"lang\", or let `xqdb add` detect it)".into()
        } else {
            have.join(", ")
        }
    ))
}

/// The language of a text query, detected when the index has per-language query adapters
/// (so that the query uses its language's adapter) or a stemming lexical index (so that the
/// query's words are stemmed like the passages') and the build can detect languages.
fn detect_query_lang(index: &xqdb::Index, text: Option<&str>) -> Option<String> {
    let text = text?;
    let snap = index.snapshot();
    let stems = snap.lexical_settings().is_some_and(|l| l.stem);
    if snap.lang_adapters().next().is_none() && !stems {
        return None;
    }
    #[cfg(feature = "documents")]
    {
        xqdb::documents::detect_language(text)
    }
    #[cfg(not(feature = "documents"))]
    {
        let _ = text;
        None
    }
}
