//! `xqdb._xqdb`: the Python extension, a thin layer over xqdb's public Rust API (no second
//! implementation). Every call that encodes, generates, scans or commits releases the GIL.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::{Arc, Mutex};

create_exception!(xqdb, XqdbError, PyException, "Every error xqdb raises.");
create_exception!(
    xqdb,
    InvalidInputError,
    XqdbError,
    "Bad input: wrong dimension, non-finite values, invalid passage or argument."
);
create_exception!(
    xqdb,
    DuplicateIdError,
    InvalidInputError,
    "An inserted id already exists (use an upsert)."
);
create_exception!(
    xqdb,
    CorruptError,
    XqdbError,
    "A damaged, truncated or foreign file."
);
create_exception!(
    xqdb,
    NotAnIndexError,
    XqdbError,
    "The folder holds no index, or already holds one."
);
create_exception!(
    xqdb,
    VersionError,
    XqdbError,
    "The index was written by a newer format version."
);
create_exception!(
    xqdb,
    BusyError,
    XqdbError,
    "Another writer or process holds the index, or it is read-only."
);
create_exception!(
    xqdb,
    ModelError,
    XqdbError,
    "ONNX Runtime or a model is missing, damaged or does not match the index."
);
create_exception!(
    xqdb,
    StorageError,
    XqdbError,
    "An I/O or catalog error; after a failed commit the writer needs a reopen."
);

/// The Python exception for an xqdb error, carrying its message.
fn to_py(e: xqdb::Error) -> PyErr {
    use xqdb::Error as E;
    let msg = e.to_string();
    match e {
        E::DuplicateId { .. } => DuplicateIdError::new_err(msg),
        E::DimensionMismatch { .. }
        | E::InvalidVector { .. }
        | E::InvalidPassage { .. }
        | E::InvalidArgument(_)
        | E::IncompatibleOptions { .. } => InvalidInputError::new_err(msg),
        E::Corrupt { .. } | E::Foreign { .. } => CorruptError::new_err(msg),
        E::NotAnIndex { .. } | E::AlreadyExists { .. } => NotAnIndexError::new_err(msg),
        E::UnsupportedVersion { .. } => VersionError::new_err(msg),
        E::Locked { .. } | E::WriterBusy | E::ReadOnly => BusyError::new_err(msg),
        E::RuntimeUnavailable { .. }
        | E::Model { .. }
        | E::ModelMismatch { .. }
        | E::NoEncoder
        | E::NoGenerator => ModelError::new_err(format!(
            "{msg} (from Python: `python -m xqdb setup` sets up ONNX Runtime and the default \
             model)"
        )),
        _ => StorageError::new_err(msg),
    }
}

/// A JSON value as a Python object (through the `json` module).
fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (v.to_string(),))?.unbind())
}

/// A serialisable Rust value (a report, stats, a passage) as Python objects.
fn to_python<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let v = serde_json::to_value(value).map_err(|e| StorageError::new_err(e.to_string()))?;
    json_to_py(py, &v)
}

/// The rows of a 2-D float32 array.
fn rows_of(vectors: &PyReadonlyArray2<'_, f32>) -> Vec<Vec<f32>> {
    vectors
        .as_array()
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect()
}

/// A Python object as a JSON value.
fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let json = obj.py().import("json")?;
    let text: String = json.call_method1("dumps", (obj,))?.extract()?;
    serde_json::from_str(&text).map_err(|e| InvalidInputError::new_err(e.to_string()))
}

/// An xQG profile from Python: None or True → the default (the paper's settings); a dict
/// overrides fields of the default (`languages` as "fi,ja" or a list of codes / CODE=Name).
fn profile_of(obj: Option<&Bound<'_, PyAny>>) -> PyResult<xqdb::XqgProfile> {
    let bad = |m: String| InvalidInputError::new_err(format!("xQG profile: {m}"));
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(xqdb::XqgProfile::default());
    };
    if let Ok(flag) = obj.cast::<pyo3::types::PyBool>() {
        return if flag.is_true() {
            Ok(xqdb::XqgProfile::default())
        } else {
            Err(bad("False is not a profile (leave it out for none)".into()))
        };
    }
    let serde_json::Value::Object(given) = py_to_json(obj)? else {
        return Err(bad("give True or a dict of settings".into()));
    };
    let mut merged =
        serde_json::to_value(xqdb::XqgProfile::default()).map_err(|e| bad(e.to_string()))?;
    for (key, value) in given {
        let value = match (key.as_str(), value) {
            ("languages", serde_json::Value::String(list)) => {
                serde_json::to_value(xqdb::xqg::TargetLanguage::parse_list(&list).map_err(to_py)?)
                    .map_err(|e| bad(e.to_string()))?
            }
            ("languages", serde_json::Value::Array(codes))
                if codes.iter().all(serde_json::Value::is_string) =>
            {
                let list: Vec<&str> = codes.iter().filter_map(|c| c.as_str()).collect();
                serde_json::to_value(
                    xqdb::xqg::TargetLanguage::parse_list(&list.join(",")).map_err(to_py)?,
                )
                .map_err(|e| bad(e.to_string()))?
            }
            (_, v) => v,
        };
        merged[key] = value;
    }
    let profile: xqdb::XqgProfile =
        serde_json::from_value(merged).map_err(|e| bad(e.to_string()))?;
    profile.validate().map_err(to_py)?;
    Ok(profile)
}

/// One search result.
#[pyclass(module = "xqdb._xqdb", frozen, get_all)]
struct Hit {
    /// The passage id.
    id: String,
    /// The score (dense, BM25 or fused by the search's mode).
    score: f32,
    /// The passage text.
    text: String,
    /// Its title, if any.
    title: Option<String>,
    /// Its language tag, if any.
    lang: Option<String>,
    /// Its metadata (a dict), if any.
    meta: Option<Py<PyAny>>,
    /// The vector similarity, when a hybrid search computed it.
    dense_score: Option<f32>,
    /// The BM25 score, when a lexical or hybrid search matched.
    lexical_score: Option<f32>,
    /// An excerpt with matched terms marked, for lexical matches.
    snippet: Option<String>,
}

#[pymethods]
impl Hit {
    fn __repr__(&self) -> String {
        format!("Hit(id={:?}, score={})", self.id, self.score)
    }
}

fn hit_to_py(py: Python<'_>, h: xqdb::Hit) -> PyResult<Hit> {
    Ok(Hit {
        meta: h
            .passage
            .meta
            .as_ref()
            .map(|m| json_to_py(py, m))
            .transpose()?,
        id: h.id,
        score: h.score,
        text: h.passage.text,
        title: h.passage.title,
        lang: h.passage.lang,
        dense_score: h.dense_score,
        lexical_score: h.lexical_score,
        snippet: h.snippet,
    })
}

fn hits_to_py(py: Python<'_>, hits: Vec<xqdb::Hit>) -> PyResult<Vec<Hit>> {
    hits.into_iter().map(|h| hit_to_py(py, h)).collect()
}

/// Search options from keyword arguments.
fn options(
    k: usize,
    lang: Option<Vec<String>>,
    meta: Option<&Bound<'_, PyDict>>,
    mode: &str,
    query_lang: Option<String>,
) -> PyResult<xqdb::SearchOptions> {
    let mut filter = xqdb::Filter::new();
    if let Some(l) = lang {
        filter = filter.langs(l);
    }
    if let Some(m) = meta {
        for (field, value) in m.iter() {
            filter = filter.meta_eq(field.extract::<String>()?, py_to_json(&value)?);
        }
    }
    let mut o = xqdb::SearchOptions::new(k).filter(filter);
    o.mode = mode.parse().map_err(InvalidInputError::new_err)?;
    o.query_lang = query_lang;
    Ok(o)
}

/// A passage from a dict {"id", "text", "title"?, "lang"?, "meta"?}.
fn passage_of(row: &Bound<'_, PyAny>) -> PyResult<xqdb::Passage> {
    let row = row.cast::<PyDict>().map_err(|_| {
        InvalidInputError::new_err("each row must be a dict with \"id\" and \"text\"")
    })?;
    let get = |k: &str| row.get_item(k);
    let need = |k: &str| -> PyResult<String> {
        get(k)?
            .ok_or_else(|| InvalidInputError::new_err(format!("a row has no {k:?}")))?
            .extract()
    };
    let mut p = xqdb::Passage::new(need("id")?, need("text")?);
    if let Some(t) = get("title")?.filter(|v| !v.is_none()) {
        p = p.with_title(t.extract::<String>()?);
    }
    if let Some(l) = get("lang")?.filter(|v| !v.is_none()) {
        p = p.with_lang(l.extract::<String>()?);
    }
    if let Some(m) = get("meta")?.filter(|v| !v.is_none()) {
        p = p.with_meta(py_to_json(&m)?);
    }
    Ok(p)
}

/// Per query, the hit ids; and the scores as an (n, k) array.
type IdsAndScores<'py> = (Vec<Vec<String>>, Bound<'py, PyArray2<f32>>);

/// An index folder: searches from any thread, one writer at a time.
#[pyclass(module = "xqdb._xqdb", frozen)]
struct Index {
    index: xqdb::Index,
}

#[pymethods]
impl Index {
    /// Opens an existing index (read-only if asked).
    #[staticmethod]
    #[pyo3(signature = (path, read_only = false))]
    fn open(py: Python<'_>, path: std::path::PathBuf, read_only: bool) -> PyResult<Index> {
        let index = py
            .detach(|| xqdb::Index::builder().read_only(read_only).open(&path))
            .map_err(to_py)?;
        Ok(Index { index })
    }

    /// Creates an index: for vectors of `dim` components, or (no `dim`) for text with the
    /// default model; `metric` "cosine" (default) or "dot"; `lexical` keeps a keyword index.
    /// `xqg` (True or a dict of profile settings) records an xQG profile, and `generator` (a
    /// generator folder) generates queries on insert (with the default profile if no `xqg`).
    #[staticmethod]
    /// `model` names an encoder bundle folder other than the default.
    #[pyo3(signature = (path, dim = None, metric = None, lexical = false, xqg = None, generator = None, model = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn create(
        py: Python<'_>,
        path: std::path::PathBuf,
        dim: Option<usize>,
        metric: Option<&str>,
        lexical: bool,
        xqg: Option<&Bound<'_, PyAny>>,
        generator: Option<std::path::PathBuf>,
        model: Option<std::path::PathBuf>,
    ) -> PyResult<Index> {
        // None and False: no profile (unless a generator asks for the default one).
        let xqg = xqg.filter(|x| {
            !x.is_none()
                && x.cast::<pyo3::types::PyBool>()
                    .map_or(true, |b| b.is_true())
        });
        let profile = match (xqg, &generator) {
            (None, None) => None,
            (x, _) => Some(profile_of(x)?),
        };
        let metric = match metric.unwrap_or("cosine") {
            "cosine" => xqdb::Metric::Cosine,
            "dot" => xqdb::Metric::Dot,
            m => {
                return Err(InvalidInputError::new_err(format!(
                    "unknown metric {m:?} (cosine, dot)"
                )))
            }
        };
        let index = py
            .detach(|| -> xqdb::Result<xqdb::Index> {
                let mut b = xqdb::Index::builder().metric(metric);
                if lexical {
                    b = b.lexical(xqdb::LexicalSettings::default());
                }
                if let Some(p) = profile {
                    b = b.xqg(p);
                }
                if let Some(g) = &generator {
                    let options = xqdb::GeneratorOptions::default();
                    b = b.generator(Arc::new(xqdb::Generator::open(g, &options)?));
                }
                b = match (dim, model) {
                    (Some(d), None) => b.dim(d),
                    (d, m) => {
                        let dir = m.unwrap_or_else(xqdb::ModelBundle::default_dir);
                        let encoder = xqdb::Encoder::from_dir(dir)?;
                        if let Some(d) = d.filter(|&d| d != encoder.dim()) {
                            return Err(xqdb::Error::InvalidArgument(format!(
                                "dim {d}, but the model's vectors have {}",
                                encoder.dim()
                            )));
                        }
                        b.encoder(Arc::new(encoder))
                    }
                };
                b.create(&path)
            })
            .map_err(to_py)?;
        Ok(Index { index })
    }

    /// The index's xQG profile as a dict, or None.
    fn xqg_profile(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let snap = self.index.snapshot();
        snap.xqg_profile().map(|p| to_python(py, p)).transpose()
    }

    /// The index's writer (one at a time; use it as a context manager).
    fn writer(&self, py: Python<'_>) -> PyResult<Writer> {
        let w = py.detach(|| self.index.writer()).map_err(to_py)?;
        Ok(Writer {
            writer: Mutex::new(Some(w)),
        })
    }

    /// Top `k` passages for a text query (encoded by the index's model; `mode` "dense",
    /// "lexical" or "hybrid").
    #[pyo3(signature = (query, k = 10, lang = None, meta = None, mode = "dense", query_lang = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn search_text(
        &self,
        py: Python<'_>,
        query: String,
        k: usize,
        lang: Option<Vec<String>>,
        meta: Option<&Bound<'_, PyDict>>,
        mode: &str,
        query_lang: Option<String>,
    ) -> PyResult<Vec<Hit>> {
        let o = options(k, lang, meta, mode, query_lang)?;
        let hits = py
            .detach(|| self.index.search_text_with(&query, &o))
            .map_err(to_py)?;
        hits_to_py(py, hits)
    }

    /// Top `k` files for a text query (passages grouped by their `path` metadata, as
    /// `xqdb sync` writes it): a list of (path, score, best passage), best first.
    #[pyo3(signature = (query, k = 10, lang = None, meta = None, mode = "dense", query_lang = None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn search_files(
        &self,
        py: Python<'_>,
        query: String,
        k: usize,
        lang: Option<Vec<String>>,
        meta: Option<&Bound<'_, PyDict>>,
        mode: &str,
        query_lang: Option<String>,
    ) -> PyResult<Vec<(String, f32, Hit)>> {
        let o = options(k, lang, meta, mode, query_lang)?;
        let files = py
            .detach(|| {
                self.index
                    .search_files(&[query.as_str()], &o, &Default::default())
            })
            .map_err(to_py)?;
        files
            .into_iter()
            .flatten()
            .map(|f| Ok((f.path, f.score, hit_to_py(py, f.best)?)))
            .collect()
    }

    /// Top `k` passages for a query vector (a 1-D float32 array).
    #[pyo3(signature = (vector, k = 10, lang = None, meta = None))]
    fn search(
        &self,
        py: Python<'_>,
        vector: PyReadonlyArray1<'_, f32>,
        k: usize,
        lang: Option<Vec<String>>,
        meta: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Hit>> {
        let o = options(k, lang, meta, "dense", None)?;
        let v: Vec<f32> = vector.as_array().iter().copied().collect();
        let hits = py
            .detach(|| self.index.search_with(&v, &o))
            .map_err(to_py)?;
        hits_to_py(py, hits)
    }

    /// Top `k` passages for each row of a 2-D float32 array, scanning once.
    #[pyo3(signature = (vectors, k = 10, lang = None, meta = None))]
    fn search_batch(
        &self,
        py: Python<'_>,
        vectors: PyReadonlyArray2<'_, f32>,
        k: usize,
        lang: Option<Vec<String>>,
        meta: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Vec<Hit>>> {
        let o = options(k, lang, meta, "dense", None)?;
        let rows = rows_of(&vectors);
        let all = py
            .detach(|| self.index.search_batch(&rows, &o))
            .map_err(to_py)?;
        all.into_iter().map(|h| hits_to_py(py, h)).collect()
    }

    /// For each row of a 2-D float32 array, the ids of its top `k` and their scores as an
    /// (n, k) float32 array (NaN where fewer than `k` passages match).
    #[pyo3(signature = (vectors, k = 10, lang = None, meta = None))]
    fn search_arrays<'py>(
        &self,
        py: Python<'py>,
        vectors: PyReadonlyArray2<'_, f32>,
        k: usize,
        lang: Option<Vec<String>>,
        meta: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<IdsAndScores<'py>> {
        let o = options(k, lang, meta, "dense", None)?;
        let rows = rows_of(&vectors);
        let all = py
            .detach(|| self.index.search_batch(&rows, &o))
            .map_err(to_py)?;
        let mut scores = vec![f32::NAN; all.len() * k];
        let ids = all
            .into_iter()
            .enumerate()
            .map(|(i, hits)| {
                hits.into_iter()
                    .enumerate()
                    .map(|(j, h)| {
                        scores[i * k + j] = h.score;
                        h.id
                    })
                    .collect()
            })
            .collect::<Vec<Vec<String>>>();
        let n = ids.len();
        let array = PyArray1::from_vec(py, scores).reshape([n, k])?;
        Ok((ids, array))
    }

    /// The stored vector of `id` (a float32 array), or None.
    fn vector<'py>(
        &self,
        py: Python<'py>,
        id: &str,
    ) -> PyResult<Option<Bound<'py, PyArray1<f32>>>> {
        let v = py
            .detach(|| self.index.snapshot().vector(id))
            .map_err(to_py)?;
        Ok(v.map(|v| PyArray1::from_vec(py, v)))
    }

    /// Writes every passage (text, queries, vectors) to a Parquet or Arrow IPC file (by its
    /// extension); returns the report as a dict.
    #[pyo3(signature = (path, f16 = false))]
    fn export(&self, py: Python<'_>, path: std::path::PathBuf, f16: bool) -> PyResult<Py<PyAny>> {
        let options = xqdb::interchange::ExportOptions {
            f16,
            ..Default::default()
        };
        let r = py
            .detach(|| xqdb::interchange::export(&self.index, &path, &options))
            .map_err(to_py)?;
        to_python(py, &r)
    }

    /// Stores the rows of a Parquet or Arrow IPC file in the schema of `export`; returns
    /// the report as a dict.
    #[pyo3(signature = (path, upsert = false))]
    fn import_file(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        upsert: bool,
    ) -> PyResult<Py<PyAny>> {
        let options = xqdb::interchange::ImportOptions {
            upsert,
            ..Default::default()
        };
        let r = py
            .detach(|| {
                let source = xqdb::interchange::Source::open(&path, options.batch_rows)?;
                xqdb::interchange::import(&self.index, source, &options)
            })
            .map_err(to_py)?;
        to_python(py, &r)
    }

    /// The stored passage `id` as a dict, or None.
    fn get(&self, py: Python<'_>, id: &str) -> PyResult<Option<Py<PyAny>>> {
        let p = py.detach(|| self.index.snapshot().get(id)).map_err(to_py)?;
        p.map(|p| to_python(py, &p)).transpose()
    }

    /// Counts and sizes (a dict).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = py.detach(|| self.index.stats()).map_err(to_py)?;
        to_python(py, &s)
    }

    /// Checks every segment and catalog row (a dict report; raises on a problem).
    fn verify(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let r = py.detach(|| self.index.verify()).map_err(to_py)?;
        to_python(py, &r)
    }

    /// Seals the tail and merges all segments, dropping deleted rows.
    fn compact(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.index.compact()).map_err(to_py)
    }

    fn __len__(&self) -> usize {
        self.index.snapshot().len() as usize
    }
}

/// An encoder model bundle (default: the set-up's default model), for vectors computed
/// outside an index (e.g. in parallel workers).
#[pyclass(module = "xqdb._xqdb", frozen)]
struct Encoder {
    encoder: Arc<xqdb::Encoder>,
}

fn rows_to_array<'py>(
    py: Python<'py>,
    rows: Vec<Vec<f32>>,
    dim: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let n = rows.len();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    PyArray1::from_vec(py, flat).reshape([n, dim])
}

#[pymethods]
impl Encoder {
    /// Opens a bundle folder (None: the default model).
    #[staticmethod]
    #[pyo3(signature = (path = None))]
    fn open(py: Python<'_>, path: Option<std::path::PathBuf>) -> PyResult<Encoder> {
        let dir = path.unwrap_or_else(xqdb::ModelBundle::default_dir);
        let encoder = py.detach(|| xqdb::Encoder::from_dir(dir)).map_err(to_py)?;
        Ok(Encoder {
            encoder: Arc::new(encoder),
        })
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.encoder.dim()
    }

    /// Passage vectors as an (n, dim) float32 array.
    fn encode_passages<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rows = py
            .detach(|| self.encoder.encode_passages(&texts))
            .map_err(to_py)?;
        rows_to_array(py, rows, self.encoder.dim())
    }

    /// Query vectors as an (n, dim) float32 array.
    fn encode_queries<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rows = py
            .detach(|| self.encoder.encode_queries(&texts))
            .map_err(to_py)?;
        rows_to_array(py, rows, self.encoder.dim())
    }
}

/// Query generation and encoding without an index: what an index with the same profile,
/// generator and encoder computes for a passage on insert. For workers of a parallel job
/// whose output (`xqdb.arrow.augment_table`) `xqdb import` stores without recomputing.
#[pyclass(module = "xqdb._xqdb", frozen)]
struct Augmenter {
    encoder: Arc<xqdb::Encoder>,
    generator: Arc<xqdb::Generator>,
    profile: xqdb::XqgProfile,
}

#[pymethods]
impl Augmenter {
    /// A generator folder, an xQG profile (None: the default; a dict overrides its
    /// settings) and an encoder bundle (None: the default model); `threads` for each model's
    /// sessions (None: all cores; give a parallel job's workers their share).
    #[new]
    #[pyo3(signature = (generator, profile = None, encoder = None, threads = None))]
    fn new(
        py: Python<'_>,
        generator: std::path::PathBuf,
        profile: Option<&Bound<'_, PyAny>>,
        encoder: Option<std::path::PathBuf>,
        threads: Option<usize>,
    ) -> PyResult<Augmenter> {
        let mut profile = profile_of(profile)?;
        if threads == Some(0) {
            return Err(InvalidInputError::new_err("threads must be at least 1"));
        }
        let (encoder, generator) = py
            .detach(|| -> xqdb::Result<_> {
                let dir = encoder.unwrap_or_else(xqdb::ModelBundle::default_dir);
                let mut eo = xqdb::EncoderOptions::default();
                let mut go = xqdb::GeneratorOptions::default();
                if let Some(t) = threads {
                    (eo.threads, go.threads) = (t, t);
                }
                let e = xqdb::Encoder::open(xqdb::ModelBundle::open(dir)?, &eo)?;
                let g = xqdb::Generator::open(&generator, &go)?;
                Ok((e, g))
            })
            .map_err(to_py)?;
        profile.generator = Some(generator.fingerprint().to_string());
        profile.generator_path = Some(generator.dir().to_string_lossy().into_owned());
        profile.deferred = false;
        Ok(Augmenter {
            encoder: Arc::new(encoder),
            generator: Arc::new(generator),
            profile,
        })
    }

    /// The profile, generator and encoder of the index at `path`.
    #[staticmethod]
    fn from_index(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Augmenter> {
        py.detach(|| -> xqdb::Result<Augmenter> {
            let index = xqdb::Index::builder().read_only(true).open(&path)?;
            let mut profile = index.snapshot().xqg_profile().cloned().ok_or_else(|| {
                xqdb::Error::InvalidArgument(format!(
                    "{}: the index has no xQG profile",
                    path.display()
                ))
            })?;
            profile.deferred = false;
            Ok(Augmenter {
                encoder: index.encoder()?,
                generator: index.generator()?,
                profile,
            })
        })
        .map_err(to_py)
    }

    /// The profile (a dict).
    #[getter]
    fn profile(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.profile)
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.encoder.dim()
    }

    /// Metadata for the file's schema: dimension, model and generator fingerprints and the
    /// profile, under the keys `xqdb export` writes (import checks the model).
    fn metadata(&self) -> PyResult<std::collections::HashMap<String, String>> {
        let profile = serde_json::to_string(&self.profile)
            .map_err(|e| StorageError::new_err(e.to_string()))?;
        Ok([
            ("xqdb.dim", self.encoder.dim().to_string()),
            ("xqdb.model_fingerprint", self.encoder.fingerprint().into()),
            (
                "xqdb.generator_fingerprint",
                self.generator.fingerprint().into(),
            ),
            ("xqdb.xqg_profile", profile),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
    }

    /// Generates and encodes the queries of rows {"id", "text", "title"?, "lang"?, "meta"?}:
    /// a dict of "id" (list), "generated_queries" (per row a list of {"lang", "text"}),
    /// "vec_passage" and "vec_query_sum" ((n, dim) float32 arrays) and "query_count"
    /// (uint32 array). `progress(done, total)` is called as they go.
    #[pyo3(signature = (rows, progress = None))]
    fn augment<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyList>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let passages = rows
            .iter()
            .map(|r| passage_of(&r))
            .collect::<PyResult<Vec<_>>>()?;
        let done = with_progress(progress, |report| {
            py.detach(|| {
                xqdb::ingest::augment_passages(
                    &self.encoder,
                    &self.generator,
                    &self.profile,
                    passages,
                    report,
                )
            })
            .map_err(to_py)
        })?;
        let dim = self.encoder.dim();
        let n = done.len();
        let mut ids = Vec::with_capacity(n);
        let mut queries = Vec::with_capacity(n);
        let mut vp = Vec::with_capacity(n * dim);
        let mut vs = Vec::with_capacity(n * dim);
        let mut counts = Vec::with_capacity(n);
        for (p, a) in done {
            ids.push(p.id);
            counts.push(a.queries.len() as u32);
            let list = PyList::empty(py);
            for (lang, text) in a.queries {
                let q = PyDict::new(py);
                q.set_item("lang", lang)?;
                q.set_item("text", text)?;
                list.append(q)?;
            }
            queries.push(list);
            vp.extend(a.passage_vector);
            vs.extend(a.query_sum);
        }
        let out = PyDict::new(py);
        out.set_item("id", ids)?;
        out.set_item("generated_queries", queries)?;
        out.set_item("vec_passage", PyArray1::from_vec(py, vp).reshape([n, dim])?)?;
        out.set_item(
            "vec_query_sum",
            PyArray1::from_vec(py, vs).reshape([n, dim])?,
        )?;
        out.set_item("query_count", PyArray1::from_vec(py, counts))?;
        Ok(out)
    }
}

/// The one writer of an index. As a context manager it commits on success and rolls back
/// (and releases the writer) when the block raises.
#[pyclass(module = "xqdb._xqdb", frozen)]
struct Writer {
    writer: Mutex<Option<xqdb::Writer>>,
}

impl Writer {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut xqdb::Writer) -> xqdb::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(w) => f(w).map_err(to_py),
                None => Err(BusyError::new_err("this writer is closed")),
            }
        })
    }

    fn texts(
        &self,
        py: Python<'_>,
        rows: &Bound<'_, PyList>,
        upsert: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let passages = rows
            .iter()
            .map(|r| passage_of(&r))
            .collect::<PyResult<Vec<_>>>()?;
        with_progress(progress, |report| {
            self.with(py, |w| {
                if upsert {
                    w.upsert_texts(passages, report)
                } else {
                    w.insert_texts(passages, report)
                }
            })
        })
    }
}

/// Runs `f` with a progress reporter calling the Python callable `progress(done, total)`;
/// the first exception the callable raised is raised after `f` (which then failed or
/// finished; a writer's block rolls back).
fn with_progress<T>(
    progress: Option<Py<PyAny>>,
    f: impl FnOnce(&(dyn Fn(&xqdb::Progress) + Sync)) -> PyResult<T>,
) -> PyResult<T> {
    let failed: Mutex<Option<PyErr>> = Mutex::new(None);
    let report = |p: &xqdb::Progress| {
        if let Some(cb) = &progress {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (p.passages, p.total)) {
                    failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    };
    let out = f(&report)?;
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[pymethods]
impl Writer {
    /// Encodes (and augments) rows {"id", "text", "title"?, "lang"?, "meta"?} and buffers
    /// them; `progress(done, total)` is called as they go.
    #[pyo3(signature = (rows, progress = None))]
    fn insert_texts(
        &self,
        py: Python<'_>,
        rows: &Bound<'_, PyList>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.texts(py, rows, false, progress)
    }

    /// Like `insert_texts`, replacing passages whose id exists.
    #[pyo3(signature = (rows, progress = None))]
    fn upsert_texts(
        &self,
        py: Python<'_>,
        rows: &Bound<'_, PyList>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.texts(py, rows, true, progress)
    }

    /// Buffers one passage per row of a 2-D float32 array (`texts` in the same order;
    /// without them each passage's text is its id).
    #[pyo3(signature = (ids, vectors, texts = None, upsert = false))]
    fn insert_vectors(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
        vectors: PyReadonlyArray2<'_, f32>,
        texts: Option<Vec<String>>,
        upsert: bool,
    ) -> PyResult<()> {
        let shape = vectors.shape();
        if shape[0] != ids.len() || texts.as_ref().is_some_and(|t| t.len() != ids.len()) {
            return Err(InvalidInputError::new_err(format!(
                "{} ids, {} vectors{}",
                ids.len(),
                shape[0],
                texts
                    .as_ref()
                    .map_or(String::new(), |t| format!(", {} texts", t.len()))
            )));
        }
        let rows = rows_of(&vectors);
        self.with(py, move |w| {
            for (i, (id, v)) in ids.into_iter().zip(rows).enumerate() {
                // A passage needs text: without `texts`, its id stands in.
                let text = texts.as_ref().map_or_else(|| id.clone(), |t| t[i].clone());
                let p = xqdb::Passage::new(id, text);
                if upsert {
                    w.upsert(p, &v)?;
                } else {
                    w.insert(p, &v)?;
                }
            }
            Ok(())
        })
    }

    /// Buffers the deletion of `id`; returns whether it existed.
    fn delete(&self, py: Python<'_>, id: String) -> PyResult<bool> {
        self.with(py, move |w| w.delete(&id))
    }

    /// Makes every buffered change durable and visible; returns the commit's sequence
    /// number.
    fn commit(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |w| w.commit().map(|c| c.commit_seq))
    }

    /// Drops every buffered change.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |w| {
            w.rollback();
            Ok(())
        })
    }

    /// Buffered changes.
    fn pending(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |w| Ok(w.pending()))
    }

    /// Releases the writer (buffered changes are dropped).
    fn close(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let result = if exc_type.is_some_and(|t| !t.is_none()) {
            self.rollback(py)
        } else {
            self.commit(py).map(|_| ())
        };
        self.close();
        result.map(|_| false)
    }
}

/// The folder of the default model bundle, in the set-up's cache (`XQDB_HOME`, else
/// `~/.cache/xqdb`); other bundles the set-up made lie next to it.
#[pyfunction]
fn default_model_dir() -> std::path::PathBuf {
    xqdb::ModelBundle::default_dir()
}

/// The extension module.
#[pymodule]
fn _xqdb(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Index>()?;
    m.add_class::<Writer>()?;
    m.add_class::<Hit>()?;
    m.add_class::<Encoder>()?;
    m.add_class::<Augmenter>()?;
    m.add_function(wrap_pyfunction!(default_model_dir, m)?)?;
    m.add("XqdbError", py.get_type::<XqdbError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("DuplicateIdError", py.get_type::<DuplicateIdError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("NotAnIndexError", py.get_type::<NotAnIndexError>())?;
    m.add("VersionError", py.get_type::<VersionError>())?;
    m.add("BusyError", py.get_type::<BusyError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("FORMAT_VERSION", xqdb::FORMAT_VERSION)?;
    Ok(())
}
