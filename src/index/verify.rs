//! Full verification of a snapshot: every segment byte and every catalog row.

use super::snapshot::Snapshot;
use crate::error::{Error, Result};
use crate::segment;
use crate::store;
use redb::{ReadableTable, ReadableTableMetadata};
use serde::Serialize;

/// What [`Snapshot::verify`] checked.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked (checksums recomputed).
    pub segments: usize,
    /// Bytes of segment files read.
    pub segment_bytes: u64,
    /// Rows in segments, deleted ones included.
    pub segment_rows: u64,
    /// Rows in the tail.
    pub tail_rows: u64,
    /// Live passages.
    pub passages: u64,
    /// Deleted rows awaiting compaction.
    pub tombstones: u64,
    /// Synced files (see `xqdb::documents`), each checked to have exactly its passages.
    #[serde(default)]
    pub files: u64,
    /// Postings of the lexical index, each checked against its passage (format 7).
    #[serde(default)]
    pub lexical_postings: u64,
}

impl Snapshot {
    /// Checks every segment's checksum and row ids, and every catalog row against the
    /// segments: each live passage has exactly one vector, each vector a passage, each
    /// id its record, and (for a writable index) no unlisted segment file lies in the
    /// folder. The first problem is returned as an error naming the file.
    pub fn verify(&self) -> Result<VerifyReport> {
        let d = self.data();
        let inner = self.inner();
        let catalog = &inner.catalog_path;
        store::in_catalog(&inner.catalog_path, || {
            let corrupt = |reason: String| Error::corrupt(catalog, reason);
            let mut report = VerifyReport::default();
            let mut live: Vec<u64> = Vec::new();
            for s in &d.segments {
                s.handle.verify_full()?;
                report.segments += 1;
                report.segment_bytes += s.handle.file_len();
                report.segment_rows += s.handle.rows() as u64;
                for (i, &rid) in s.handle.rids().iter().enumerate() {
                    if !s.dead.as_ref().is_some_and(|m| m.get(i)) {
                        live.push(rid);
                    }
                }
            }
            let dim = d.config.dim;
            for (i, &rid) in d.tail.rids.iter().enumerate() {
                if d.tail.vectors[i * dim..(i + 1) * dim]
                    .iter()
                    .any(|x| !x.is_finite())
                {
                    return Err(corrupt(format!("tail row {rid} holds a non-finite value")).into());
                }
                live.push(rid);
            }
            report.tail_rows = d.tail.len() as u64;
            live.sort_unstable();
            if let Some(w) = live.windows(2).find(|w| w[0] == w[1]) {
                return Err(corrupt(format!("row {} is stored twice", w[0])).into());
            }
            let txn = d.txn();
            let tombstones = txn.open_table(store::TOMBSTONES)?;
            let tomb_count = tombstones.len()?;
            if tomb_count != d.tombstone_count() as u64 {
                return Err(corrupt(format!(
                    "{tomb_count} tombstones listed but {} match segment rows",
                    d.tombstone_count()
                ))
                .into());
            }
            report.tombstones = tomb_count;
            let passages = txn.open_table(store::PASSAGES)?;
            let mut expected = live.iter();
            for row in passages.iter()? {
                let (rid, _) = row?;
                let rid = rid.value();
                match expected.next() {
                    Some(&want) if want == rid => {}
                    Some(&want) if want < rid => {
                        return Err(
                            corrupt(format!("row {want} has a vector but no passage")).into()
                        )
                    }
                    _ => return Err(corrupt(format!("passage row {rid} has no vector")).into()),
                }
            }
            if let Some(rid) = expected.next() {
                return Err(corrupt(format!("row {rid} has a vector but no passage")).into());
            }
            let ids = txn.open_table(store::IDS)?;
            for row in ids.iter()? {
                let (id, rid) = row?;
                let (id, rid) = (id.value(), rid.value());
                let g = passages
                    .get(rid)?
                    .ok_or_else(|| corrupt(format!("id {id:?} points at missing row {rid}")))?;
                let p = store::decode_passage(g.value())
                    .map_err(|r| corrupt(format!("passage row {rid}: {r}")))?;
                if p.id != id {
                    return Err(
                        corrupt(format!("id {id:?} points at the passage of {:?}", p.id)).into(),
                    );
                }
            }
            let id_count = ids.len()?;
            if id_count != live.len() as u64 {
                return Err(corrupt(format!("{id_count} ids but {} live rows", live.len())).into());
            }
            report.passages = id_count;
            report.lexical_postings = self.check_lexical()?;
            report.files = self.check_files()?;
            self.check_no_orphans()?;
            Ok(report)
        })
    }

    /// The lexical index holds exactly the postings of the live passages and their
    /// queries, and statistics that sum them; returns the number of postings.
    fn check_lexical(&self) -> Result<u64> {
        store::in_catalog(&self.inner().catalog_path, || {
            let Some(settings) = self.data().config.lexical else {
                return Ok(0);
            };
            #[cfg(feature = "lexical")]
            {
                use crate::lexical::store as lex;
                let inner = self.inner();
                let corrupt = |reason: String| Error::corrupt(&inner.catalog_path, reason);
                let lerr = |e: lex::LexError| match e {
                    lex::LexError::Storage(e) => Error::catalog(&inner.catalog_path, e),
                    lex::LexError::Corrupt(r) => corrupt(r),
                };
                let txn = self.data().txn();
                let mut stored = lex::digests_by_row(txn).map_err(lerr)?;
                let passages = txn.open_table(store::PASSAGES)?;
                let augment = txn.open_table(store::AUGMENT)?;
                let mut stats = store::LexicalStats::default();
                let mut count = 0u64;
                for row in passages.iter()? {
                    let (rid, bytes) = row?;
                    let rid = rid.value();
                    let aug = augment.get(rid)?;
                    let (p, queries) = super::lexical::stored_fields(
                        inner,
                        rid,
                        bytes.value(),
                        aug.as_ref().map(|a| a.value()),
                    )?;
                    let doc = lex::analyze(
                        &settings,
                        p.title.as_deref(),
                        &p.text,
                        p.lang.as_deref(),
                        &queries,
                    );
                    let want = lex::digest(&doc);
                    let have = stored.remove(&rid).unwrap_or_default();
                    if want != have {
                        return Err(corrupt(format!(
                        "the lexical postings of row {rid} ({} terms) do not match its passage \
                         ({} terms)",
                        have.0, want.0
                    ))
                        .into());
                    }
                    if want.0 > 0 {
                        stats.docs += 1;
                        stats.text_len += doc.text_len as u64;
                        stats.queries_len += doc.queries_len as u64;
                    }
                    count += want.0;
                }
                if let Some(rid) = stored.keys().min() {
                    return Err(corrupt(format!(
                        "lexical postings for row {rid}, which holds no passage"
                    ))
                    .into());
                }
                let meta = txn.open_table(store::META)?;
                let have = store::LexicalStats::read(&meta).map_err(|e| inner.meta_err(e))?;
                if have != stats {
                    return Err(corrupt(format!(
                        "lexical statistics {have:?} do not sum the postings ({stats:?})"
                    ))
                    .into());
                }
                Ok(count)
            }
            #[cfg(not(feature = "lexical"))]
            {
                let _ = settings;
                Ok(0)
            }
        })
    }

    /// Each synced file's record is readable; returns the number of files. (Whether its
    /// passages are all there is not checked: ids `path#n` are the caller's to delete too.)
    fn check_files(&self) -> Result<u64> {
        let inner = self.inner();
        let mut count = 0;
        for (path, bytes) in self.file_records()? {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("passages")?.as_u64())
                .ok_or_else(|| {
                    Error::corrupt(
                        &inner.catalog_path,
                        format!("file record of {path:?} is unreadable"),
                    )
                })?;
            count += 1;
        }
        Ok(count)
    }

    fn check_no_orphans(&self) -> Result<()> {
        let inner = self.inner();
        // A read-only handle may share the folder with a writer in another process, whose
        // half-written and retired segment files are not orphans; the writer removes real
        // orphans when it opens.
        if inner.is_read_only() {
            return Ok(());
        }
        let listed: Vec<u64> = self.data().segments.iter().map(|s| s.handle.id).collect();
        let in_use = inner.retired_in_use();
        let next = self.data().counters.next_segment;
        for name in inner
            .dir
            .list()
            .map_err(|e| Error::io(inner.dir.path(""), e))?
        {
            let known = segment::parse_file_name(&name)
                .is_some_and(|id| listed.contains(&id) || in_use.contains(&id) || id >= next);
            if !known {
                return Err(Error::corrupt(
                    inner.dir.path(&name),
                    "file in segments/ is not listed in the catalog",
                ));
            }
        }
        Ok(())
    }
}
