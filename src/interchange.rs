//! Export to and import from Apache Parquet and Arrow IPC files, for moving an index to a
//! distributed engine and for bringing back passages whose queries and vectors were
//! computed elsewhere (a Spark or Ray job writing this schema). The schema is in
//! FORMAT.md ("Interchange files"): one row per passage with `id`, `title`, `text`, `lang`,
//! `meta` (JSON text), `generated_queries` (list of {lang, text}), `vec_passage`,
//! `vec_query_sum`, `query_count`, `vec_fused` (fixed-size lists of f32, or f16 on request;
//! the first two only for xQG rows),
//! and file metadata `xqdb.*` with the dimension, metric, model fingerprint and xQG profile.
//! Both directions stream in batches: memory stays bounded by the batch size.

use crate::error::{Error, Result};
use crate::ingest::{Row, RowData, WriteMode};
use crate::xqg::{Augmentation, XqgProfile};
use crate::{Index, Metric, Passage};
use arrow_array::builder::{FixedSizeListBuilder, Float16Builder, Float32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, Float64Array, LargeListArray,
    LargeStringArray, ListArray, RecordBatch, StringArray, StructArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Version of the interchange schema written in `xqdb.schema_version`.
pub const SCHEMA_VERSION: &str = "1";

/// File container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Apache Parquet (zstd-compressed).
    Parquet,
    /// Arrow IPC file format (Feather v2).
    ArrowIpc,
}

impl FileKind {
    /// From the file name: `.parquet`/`.pq` or `.arrow`/`.feather`/`.ipc`.
    pub fn from_path(path: &Path) -> Result<FileKind> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet" | "pq") => Ok(FileKind::Parquet),
            Some("arrow" | "feather" | "ipc") => Ok(FileKind::ArrowIpc),
            _ => Err(Error::InvalidArgument(format!(
                "{}: name the file .parquet or .arrow",
                path.display()
            ))),
        }
    }
}

/// Export settings.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Rows per record batch (and Parquet row group granularity).
    pub batch_rows: usize,
    /// Write vectors as f16 instead of f32.
    pub f16: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch_rows: 8192,
            f16: false,
        }
    }
}

/// What an export or import did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TransferReport {
    /// Rows written or stored.
    pub rows: u64,
    /// Rows stored with an xQG record (import) or exported with one.
    pub augmented: u64,
    /// Rows encoded by the index's encoder on import (no vector in the file).
    pub encoded: u64,
    /// Commits made (import).
    pub commits: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// The import stopped early ([`ImportOptions::stop`]): `rows` counts the committed rows.
    pub interrupted: bool,
}

fn arrow_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{}: {e}", path.display()))
}

fn vector_field(name: &str, dim: usize, f16: bool) -> Field {
    let item = if f16 {
        DataType::Float16
    } else {
        DataType::Float32
    };
    Field::new(
        name,
        DataType::FixedSizeList(Arc::new(Field::new("item", item, true)), dim as i32),
        true,
    )
}

fn query_fields() -> Fields {
    Fields::from(vec![
        Field::new("lang", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ])
}

/// The Arrow schema of an export of an index with `dim` dimensions, with `metadata`.
pub fn schema(dim: usize, f16: bool, metadata: HashMap<String, String>) -> Schema {
    Schema::new_with_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, false),
            Field::new("lang", DataType::Utf8, true),
            Field::new("meta", DataType::Utf8, true),
            Field::new(
                "generated_queries",
                DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Struct(query_fields()),
                    false,
                ))),
                true,
            ),
            vector_field("vec_passage", dim, f16),
            vector_field("vec_query_sum", dim, f16),
            Field::new("query_count", DataType::UInt32, true),
            vector_field("vec_fused", dim, f16),
        ],
        metadata,
    )
}

struct VecColumn {
    f32: Option<FixedSizeListBuilder<Float32Builder>>,
    f16: Option<FixedSizeListBuilder<Float16Builder>>,
}

impl VecColumn {
    fn new(dim: usize, f16: bool, rows: usize) -> Self {
        let d = dim as i32;
        if f16 {
            VecColumn {
                f32: None,
                f16: Some(FixedSizeListBuilder::with_capacity(
                    Float16Builder::with_capacity(rows * dim),
                    d,
                    rows,
                )),
            }
        } else {
            VecColumn {
                f32: Some(FixedSizeListBuilder::with_capacity(
                    Float32Builder::with_capacity(rows * dim),
                    d,
                    rows,
                )),
                f16: None,
            }
        }
    }

    fn push(&mut self, v: Option<&[f32]>, dim: usize) {
        if let Some(b) = &mut self.f32 {
            match v {
                Some(v) => b.values().append_slice(v),
                None => (0..dim).for_each(|_| b.values().append_null()),
            }
            b.append(v.is_some());
        }
        if let Some(b) = &mut self.f16 {
            match v {
                Some(v) => v
                    .iter()
                    .for_each(|&x| b.values().append_value(half::f16::from_f32(x))),
                None => (0..dim).for_each(|_| b.values().append_null()),
            }
            b.append(v.is_some());
        }
    }

    fn finish(&mut self, field: &Field) -> ArrayRef {
        let arr: FixedSizeListArray = match (&mut self.f32, &mut self.f16) {
            (Some(b), _) => b.finish(),
            (_, Some(b)) => b.finish(),
            _ => unreachable!("one builder is set"),
        };
        // Builders name the item field "item" and make it nullable, as the schema does.
        let (_, size, values, nulls) = arr.into_parts();
        let DataType::FixedSizeList(item, _) = field.data_type() else {
            unreachable!("vector fields are fixed-size lists")
        };
        Arc::new(FixedSizeListArray::new(item.clone(), size, values, nulls))
    }
}

enum Sink {
    Parquet(parquet::arrow::ArrowWriter<std::fs::File>),
    Ipc(arrow_ipc::writer::FileWriter<std::fs::File>),
}

/// Writes every live passage of `index`'s latest commit to `path` (Parquet or Arrow IPC by
/// its extension), `options.batch_rows` passages at a time.
///
/// ```
/// use xqdb::interchange::{export, import_new, ExportOptions, ImportOptions};
/// use xqdb::{Index, Passage};
/// # fn main() -> xqdb::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let index = Index::builder().dim(2).create(dir.path().join("a"))?;
/// let mut w = index.writer()?;
/// w.insert(Passage::new("p1", "one"), &[0.6, 0.8])?;
/// w.commit()?;
/// let file = dir.path().join("a.parquet");
/// export(&index, &file, &ExportOptions::default())?;
/// let (copy, report) = import_new(&dir.path().join("b"), &file, None, &ImportOptions::default())?;
/// assert_eq!(report.rows, 1);
/// assert_eq!(copy.snapshot().vector("p1")?, index.snapshot().vector("p1")?);
/// # Ok(()) }
/// ```
pub fn export(index: &Index, path: &Path, options: &ExportOptions) -> Result<TransferReport> {
    let kind = FileKind::from_path(path)?;
    let snap = index.snapshot();
    let stats = snap.stats()?;
    let dim = snap.dim();
    let mut metadata = HashMap::from([
        (
            "xqdb.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        ),
        ("xqdb.dim".to_string(), dim.to_string()),
        (
            "xqdb.metric".to_string(),
            format!("{:?}", snap.metric()).to_lowercase(),
        ),
        (
            "xqdb.dtype".to_string(),
            format!("{:?}", snap.dtype()).to_lowercase(),
        ),
        ("xqdb.store_uuid".to_string(), stats.store_uuid.clone()),
    ]);
    if let Some(f) = &stats.model_fingerprint {
        metadata.insert("xqdb.model_fingerprint".into(), f.clone());
    }
    if let Some(p) = snap.xqg_profile() {
        metadata.insert("xqdb.alpha".into(), p.alpha.to_string());
        metadata.insert(
            "xqdb.xqg_profile".into(),
            serde_json::to_string(p).expect("profiles serialise"),
        );
        if let Some(g) = &p.generator {
            metadata.insert("xqdb.generator_fingerprint".into(), g.clone());
        }
    }
    let schema: SchemaRef = Arc::new(schema(dim, options.f16, metadata.clone()));
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut sink = match kind {
        FileKind::Parquet => {
            let kv = metadata
                .iter()
                .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                .collect();
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .set_key_value_metadata(Some(kv))
                .build();
            Sink::Parquet(
                parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                    .map_err(|e| arrow_err(path, e))?,
            )
        }
        FileKind::ArrowIpc => Sink::Ipc(
            arrow_ipc::writer::FileWriter::try_new(file, &schema)
                .map_err(|e| arrow_err(path, e))?,
        ),
    };
    let mut report = TransferReport::default();
    let mut after: Option<String> = None;
    loop {
        // One id-table page per batch; each row is then read by its row id.
        let ids = snap.id_rids_after(after.as_deref(), options.batch_rows.max(1))?;
        let Some((last, _)) = ids.last() else { break };
        after = Some(last.clone());
        let n = ids.len();
        let (mut id_c, mut title_c, mut text_c, mut lang_c, mut meta_c) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut q_offsets, mut q_langs, mut q_texts, mut q_valid) =
            (vec![0i32], Vec::new(), Vec::new(), Vec::with_capacity(n));
        let mut counts: Vec<Option<u32>> = Vec::with_capacity(n);
        let mut vp = VecColumn::new(dim, options.f16, n);
        let mut vs = VecColumn::new(dim, options.f16, n);
        let mut vf = VecColumn::new(dim, options.f16, n);
        for (id, rid) in &ids {
            let p = snap.passage_by_rid(*rid)?;
            let fused = snap.vector_by_rid(*rid, id)?;
            let aug = snap.augmentation_by_rid(*rid)?.filter(|a| !a.pending);
            match &aug {
                Some(a) => {
                    for (l, t) in &a.queries {
                        q_langs.push(l.clone());
                        q_texts.push(t.clone());
                    }
                    q_valid.push(true);
                    counts.push(Some(a.queries.len() as u32));
                    vp.push(Some(&a.passage_vector), dim);
                    vs.push(Some(&a.query_sum), dim);
                    report.augmented += 1;
                }
                None => {
                    q_valid.push(false);
                    counts.push(None);
                    vp.push(None, dim);
                    vs.push(None, dim);
                }
            }
            q_offsets.push(q_langs.len() as i32);
            vf.push(Some(&fused), dim);
            id_c.push(p.id);
            title_c.push(p.title);
            text_c.push(p.text);
            lang_c.push(p.lang);
            meta_c.push(p.meta.map(|m| m.to_string()));
        }
        let fields = query_fields();
        let structs = StructArray::new(
            fields.clone(),
            vec![
                Arc::new(StringArray::from(q_langs)) as ArrayRef,
                Arc::new(StringArray::from(q_texts)) as ArrayRef,
            ],
            None,
        );
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Struct(fields), false)),
            arrow_buffer::OffsetBuffer::new(q_offsets.into()),
            Arc::new(structs),
            Some(arrow_buffer::NullBuffer::from(q_valid)),
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(id_c)),
            Arc::new(StringArray::from(title_c)),
            Arc::new(StringArray::from(text_c)),
            Arc::new(StringArray::from(lang_c)),
            Arc::new(StringArray::from(meta_c)),
            Arc::new(list),
            vp.finish(schema.field(6)),
            vs.finish(schema.field(7)),
            Arc::new(UInt32Array::from(counts)),
            vf.finish(schema.field(9)),
        ];
        let batch =
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| arrow_err(path, e))?;
        match &mut sink {
            Sink::Parquet(w) => w.write(&batch).map_err(|e| arrow_err(path, e))?,
            Sink::Ipc(w) => w.write(&batch).map_err(|e| arrow_err(path, e))?,
        }
        report.rows += n as u64;
    }
    match sink {
        Sink::Parquet(w) => {
            w.close().map_err(|e| arrow_err(path, e))?;
        }
        Sink::Ipc(mut w) => w.finish().map_err(|e| arrow_err(path, e))?,
    }
    report.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(report)
}

/// An interchange file opened for reading: its schema metadata and a batch iterator.
pub struct Source {
    path: std::path::PathBuf,
    metadata: HashMap<String, String>,
    schema: SchemaRef,
    batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>>>,
    /// A batch read ahead to learn the dimension of variable-length vector lists.
    peeked: Option<RecordBatch>,
}

impl Source {
    /// Opens a Parquet or Arrow IPC file (by extension), reading `batch_rows` rows at a time.
    pub fn open(path: &Path, batch_rows: usize) -> Result<Source> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let (schema, mut metadata, batches): (
            SchemaRef,
            HashMap<String, String>,
            Box<dyn Iterator<Item = _>>,
        ) = match FileKind::from_path(path)? {
            FileKind::Parquet => {
                let b =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| arrow_err(path, e))?;
                let kv: HashMap<String, String> = b
                    .metadata()
                    .file_metadata()
                    .key_value_metadata()
                    .into_iter()
                    .flatten()
                    .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                    .collect();
                let schema = b.schema().clone();
                let reader = b
                    .with_batch_size(batch_rows.max(1))
                    .build()
                    .map_err(|e| arrow_err(path, e))?;
                (schema, kv, Box::new(reader))
            }
            FileKind::ArrowIpc => {
                let r = arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| arrow_err(path, e))?;
                (r.schema(), HashMap::new(), Box::new(r))
            }
        };
        for (k, v) in schema.metadata() {
            metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Ok(Source {
            path: path.to_path_buf(),
            metadata,
            schema,
            batches,
            peeked: None,
        })
    }

    /// The dimension of the first vector in the file, reading ahead one batch (for files
    /// whose vectors are variable-length lists, as DuckDB and Spark write them).
    fn first_vector_len(&mut self) -> Result<Option<usize>> {
        if self.peeked.is_none() {
            match self.batches.next() {
                Some(b) => self.peeked = Some(b.map_err(|e| arrow_err(&self.path, e))?),
                None => return Ok(None),
            }
        }
        let batch = self.peeked.as_ref().expect("peeked above");
        for name in ["vec_fused", "vec_passage"] {
            if let Some(v) = vectors(&self.path, batch, name)?
                .into_iter()
                .flatten()
                .next()
            {
                return Ok(Some(v.len()));
            }
        }
        Ok(None)
    }

    /// The file's key-value metadata (`xqdb.*` keys, among others).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The vector dimension: `xqdb.dim`, or the size of the first vector column.
    pub fn dim(&self) -> Option<usize> {
        if let Some(d) = self.metadata.get("xqdb.dim").and_then(|d| d.parse().ok()) {
            return Some(d);
        }
        ["vec_fused", "vec_passage"].iter().find_map(|name| {
            match self.schema.field_with_name(name).ok()?.data_type() {
                DataType::FixedSizeList(_, n) => Some(*n as usize),
                _ => None,
            }
        })
    }

    /// The metric recorded by an xqdb export.
    pub fn metric(&self) -> Option<Metric> {
        match self.metadata.get("xqdb.metric")?.as_str() {
            "dot" => Some(Metric::Dot),
            "cosine" => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The xQG profile recorded by an xqdb export.
    pub fn xqg_profile(&self) -> Result<Option<XqgProfile>> {
        self.metadata
            .get("xqdb.xqg_profile")
            .map(|j| {
                serde_json::from_str(j)
                    .map_err(|e| arrow_err(&self.path, format!("xQG profile: {e}")))
            })
            .transpose()
    }
}

fn bad(path: &Path, row: u64, msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{} row {row}: {msg}", path.display()))
}

fn strings(
    path: &Path,
    batch: &RecordBatch,
    name: &str,
    required: bool,
) -> Result<Vec<Option<String>>> {
    let Some(col) = batch.column_by_name(name) else {
        if required {
            return Err(arrow_err(path, format!("no column {name:?}")));
        }
        return Ok(vec![None; batch.num_rows()]);
    };
    let get = |i: usize| -> Result<Option<String>> {
        if col.is_null(i) {
            return Ok(None);
        }
        if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
            return Ok(Some(a.value(i).to_string()));
        }
        if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
            return Ok(Some(a.value(i).to_string()));
        }
        Err(arrow_err(
            path,
            format!("column {name:?} is {} (want a string)", col.data_type()),
        ))
    };
    (0..batch.num_rows()).map(get).collect()
}

/// Values of one list cell as f32 (from f16, f32 or f64 items).
fn floats(values: &ArrayRef) -> Option<Vec<f32>> {
    if values.null_count() > 0 {
        return None;
    }
    let any = values.as_any();
    if let Some(a) = any.downcast_ref::<Float32Array>() {
        return Some(a.values().to_vec());
    }
    if let Some(a) = any.downcast_ref::<Float16Array>() {
        return Some(a.values().iter().map(|x| x.to_f32()).collect());
    }
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        return Some(a.values().iter().map(|&x| x as f32).collect());
    }
    None
}

fn vectors(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<Vec<f32>>>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(vec![None; batch.num_rows()]);
    };
    let cell = |i: usize| -> Result<Option<Vec<f32>>> {
        if col.is_null(i) {
            return Ok(None);
        }
        let values = if let Some(a) = col.as_any().downcast_ref::<FixedSizeListArray>() {
            a.value(i)
        } else if let Some(a) = col.as_any().downcast_ref::<ListArray>() {
            a.value(i)
        } else if let Some(a) = col.as_any().downcast_ref::<LargeListArray>() {
            a.value(i)
        } else {
            return Err(arrow_err(
                path,
                format!(
                    "column {name:?} is {} (want a list of floats)",
                    col.data_type()
                ),
            ));
        };
        floats(&values).map(Some).ok_or_else(|| {
            arrow_err(
                path,
                format!("column {name:?} holds nulls or non-float items"),
            )
        })
    };
    (0..batch.num_rows()).map(cell).collect()
}

/// Per row: the generated queries as (language, text), or `None` for a null cell.
type QueryColumn = Vec<Option<Vec<(String, String)>>>;

fn query_lists(path: &Path, batch: &RecordBatch) -> Result<QueryColumn> {
    let Some(col) = batch.column_by_name("generated_queries") else {
        return Ok(vec![None; batch.num_rows()]);
    };
    let list = col
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| arrow_err(path, "generated_queries must be a list of {lang, text}"))?;
    (0..batch.num_rows())
        .map(|i| {
            if list.is_null(i) {
                return Ok(None);
            }
            let v = list.value(i);
            let s = v
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| arrow_err(path, "generated_queries items must be {lang, text}"))?;
            let field = |n: &str| -> Result<Vec<Option<String>>> {
                let c = s.column_by_name(n).ok_or_else(|| {
                    arrow_err(path, format!("generated_queries items lack {n:?}"))
                })?;
                let one =
                    RecordBatch::try_from_iter([(n, c.clone())]).map_err(|e| arrow_err(path, e))?;
                strings(path, &one, n, true)
            };
            let (langs, texts) = (field("lang")?, field("text")?);
            langs
                .into_iter()
                .zip(texts)
                .map(|(l, t)| match (l, t) {
                    (Some(l), Some(t)) => Ok((l, t)),
                    _ => Err(arrow_err(path, "a generated query has a null lang or text")),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some)
        })
        .collect()
}

/// Import settings.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Rows read per batch.
    pub batch_rows: usize,
    /// Rows per durable commit.
    pub commit_rows: usize,
    /// Replace passages whose id exists instead of failing.
    pub upsert: bool,
    /// Set (by a signal handler, say) to stop before the next commit: the rows since the
    /// last commit are rolled back and the report says `interrupted`.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_rows: 8192,
            commit_rows: 65_536,
            upsert: false,
            stop: None,
        }
    }
}

/// Stores every row of `source` in `index` without recomputing what the file holds: a row
/// with `vec_passage`, `vec_query_sum` and `query_count` gets an xQG record (its stored
/// vector fused under the index's profile); a row with only `vec_fused` (or `vec_passage`)
/// is stored with that vector; a row without vectors is encoded (with its
/// `generated_queries`, if any). A bad row is an error naming it; rows of earlier commits
/// stay (see `commits`), nothing of the failing commit is written.
pub fn import(index: &Index, source: Source, options: &ImportOptions) -> Result<TransferReport> {
    let path = source.path.clone();
    let snap = index.snapshot();
    let dim = snap.dim();
    if let Some(d) = source.dim() {
        if d != dim {
            return Err(Error::DimensionMismatch {
                id: path.display().to_string(),
                expected: dim,
                found: d,
            });
        }
    }
    if let (Some(file), Some(ours)) = (
        source.metadata.get("xqdb.model_fingerprint"),
        snap.stats()?.model_fingerprint,
    ) {
        if *file != ours {
            return Err(Error::ModelMismatch {
                path: path.clone(),
                stored: ours,
                given: file.clone(),
            });
        }
    }
    let has_profile = snap.xqg_profile().is_some();
    drop(snap);
    let mut w = index.writer()?;
    let mut report = TransferReport {
        bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        ..Default::default()
    };
    let mode = if options.upsert {
        WriteMode::Upsert
    } else {
        WriteMode::Insert
    };
    let mut row_no = 0u64;
    // The rows of the commit being assembled, and their row numbers in the file.
    let mut rows: Vec<Row> = Vec::new();
    let mut row_nos: Vec<u64> = Vec::new();
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    };
    let flush = |w: &mut crate::Writer, rows: &mut Vec<Row>, row_nos: &mut Vec<u64>| {
        let rows = std::mem::take(rows);
        // A text longer than the model reads is refused, not cut silently.
        let staged = index
            .check_fits(&rows)
            .and_then(|()| w.stage_rows(rows, mode, &|_| {}));
        let nos = std::mem::take(row_nos);
        staged.map_err(|e| match e.row {
            Some(r) => bad(&path, nos[r], e.error),
            None => e.error,
        })
    };
    let batches = source.peeked.into_iter().map(Ok).chain(source.batches);
    let result = (|| -> Result<()> {
        for batch in batches {
            let batch = batch.map_err(|e| arrow_err(&path, e))?;
            let ids = strings(&path, &batch, "id", true)?;
            let titles = strings(&path, &batch, "title", false)?;
            let bodies = strings(&path, &batch, "text", true)?;
            let langs = strings(&path, &batch, "lang", false)?;
            let metas = strings(&path, &batch, "meta", false)?;
            let queries = query_lists(&path, &batch)?;
            let vp = vectors(&path, &batch, "vec_passage")?;
            let vs = vectors(&path, &batch, "vec_query_sum")?;
            let vf = vectors(&path, &batch, "vec_fused")?;
            let counts: Vec<Option<u32>> = match batch.column_by_name("query_count") {
                None => vec![None; batch.num_rows()],
                Some(c) => {
                    let c =
                        arrow_cast::cast(c, &DataType::UInt32).map_err(|e| arrow_err(&path, e))?;
                    let a = c
                        .as_any()
                        .downcast_ref::<UInt32Array>()
                        .expect("cast to u32");
                    (0..a.len())
                        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                        .collect()
                }
            };
            for i in 0..batch.num_rows() {
                row_no += 1;
                let id = ids[i]
                    .clone()
                    .ok_or_else(|| bad(&path, row_no, "id is null"))?;
                let text = bodies[i]
                    .clone()
                    .ok_or_else(|| bad(&path, row_no, "text is null"))?;
                let mut p = Passage::new(id, text);
                p.title = titles[i].clone();
                p.lang = langs[i].clone();
                p.meta = metas[i]
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| bad(&path, row_no, format!("meta is not JSON: {e}")))?;
                let data = match (&vp[i], &vs[i], counts[i], &vf[i]) {
                    (Some(e_p), Some(sum), Some(n), _) if has_profile => {
                        let qs = queries[i].clone().unwrap_or_default();
                        if qs.len() != n as usize {
                            return Err(bad(
                                &path,
                                row_no,
                                format!("query_count {n} but {} generated_queries", qs.len()),
                            ));
                        }
                        report.augmented += 1;
                        RowData::Augmented(Augmentation {
                            passage_vector: e_p.clone(),
                            query_sum: sum.clone(),
                            queries: qs,
                            query_vectors: None,
                            pending: false,
                        })
                    }
                    (_, _, _, Some(v)) | (Some(v), None, _, None) => RowData::Vector(v.clone()),
                    _ => {
                        report.encoded += 1;
                        match queries[i].clone() {
                            Some(q) => RowData::Queries(q),
                            None => RowData::Text,
                        }
                    }
                };
                rows.push(Row { passage: p, data });
                row_nos.push(row_no);
                report.rows += 1;
                if rows.len() >= options.commit_rows.max(1) {
                    flush(&mut w, &mut rows, &mut row_nos)?;
                    if stopped() {
                        report.rows -= w.pending() as u64;
                        w.rollback();
                        report.interrupted = true;
                        return Ok(());
                    }
                    w.commit()?;
                    report.commits += 1;
                }
            }
        }
        if !rows.is_empty() {
            flush(&mut w, &mut rows, &mut row_nos)?;
            if stopped() {
                report.rows -= w.pending() as u64;
                w.rollback();
                report.interrupted = true;
                return Ok(());
            }
            w.commit()?;
            report.commits += 1;
        }
        Ok(())
    })();
    if let Err(e) = result {
        w.rollback();
        return Err(e);
    }
    Ok(report)
}

/// Creates an index at `dir` with the settings an xqdb export recorded (dimension, metric,
/// xQG profile; the model from `encoder`, if given) and imports the file into it.
pub fn import_new(
    dir: &Path,
    path: &Path,
    encoder: Option<Arc<crate::Encoder>>,
    options: &ImportOptions,
) -> Result<(Index, TransferReport)> {
    let mut source = Source::open(path, options.batch_rows)?;
    let dim = match source.dim() {
        Some(d) => Some(d),
        None => source.first_vector_len()?,
    }
    .ok_or_else(|| {
        arrow_err(
            path,
            "no xqdb.dim metadata and no vector column: cannot size the index",
        )
    })?;
    let mut b = Index::builder()
        .dim(dim)
        .metric(source.metric().unwrap_or(Metric::Cosine));
    if let Some(p) = source.xqg_profile()? {
        b = b.xqg(p);
    }
    if let Some(e) = encoder {
        b = b.encoder(e);
    }
    let index = b.create(dir)?;
    let report = import(&index, source, options)?;
    Ok((index, report))
}
