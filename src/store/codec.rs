//! Byte encodings of catalog values (FORMAT.md, "Catalog values"). Little-endian,
//! versioned by their first byte; decoders reject anything malformed without panicking.

use crate::segment::format::{CODES_BINARY, CODES_I8};
use crate::segment::SegmentRecord;
use crate::types::{Codes, Dtype, FirstPass, Passage};
use crate::xqg::Augmentation;

const PASSAGE_V1: u8 = 1;
const FLAG_TITLE: u8 = 1;
const FLAG_LANG: u8 = 2;
const FLAG_META: u8 = 4;
const FLAG_ZSTD: u8 = 8;
/// Texts at least this long are zstd-compressed.
const COMPRESS_FROM: usize = 128;
const ZSTD_LEVEL: i32 = 3;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encodes a passage record: `[ver][flags][id][title?][lang?][meta?][raw_len u32][text]`,
/// each string a u32 length followed by UTF-8 bytes.
pub(crate) fn encode_passage(p: &Passage, meta_json: Option<&str>) -> Vec<u8> {
    let mut flags = 0;
    if p.title.is_some() {
        flags |= FLAG_TITLE;
    }
    if p.lang.is_some() {
        flags |= FLAG_LANG;
    }
    if meta_json.is_some() {
        flags |= FLAG_META;
    }
    let compressed = if p.text.len() >= COMPRESS_FROM {
        zstd::bulk::compress(p.text.as_bytes(), ZSTD_LEVEL)
            .ok()
            .filter(|c| c.len() < p.text.len())
    } else {
        None
    };
    if compressed.is_some() {
        flags |= FLAG_ZSTD;
    }
    let mut out = Vec::with_capacity(32 + p.id.len() + p.text.len());
    out.push(PASSAGE_V1);
    out.push(flags);
    put_bytes(&mut out, p.id.as_bytes());
    if let Some(t) = &p.title {
        put_bytes(&mut out, t.as_bytes());
    }
    if let Some(l) = &p.lang {
        put_bytes(&mut out, l.as_bytes());
    }
    if let Some(m) = meta_json {
        put_bytes(&mut out, m.as_bytes());
    }
    out.extend_from_slice(&(p.text.len() as u32).to_le_bytes());
    put_bytes(&mut out, compressed.as_deref().unwrap_or(p.text.as_bytes()));
    out
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        if self.b.len() < 4 {
            return Err("truncated".into());
        }
        let (h, t) = self.b.split_at(4);
        self.b = t;
        Ok(u32::from_le_bytes(h.try_into().expect("4 bytes")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        if self.b.len() < n {
            return Err("truncated".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "invalid UTF-8".to_string())
    }
}

struct Parts<'a> {
    passage: Passage,
    meta_json: Option<String>,
    raw_len: usize,
    text: &'a [u8],
    zstd: bool,
}

fn parse(b: &[u8]) -> Result<Parts<'_>, String> {
    if b.len() < 2 || b[0] != PASSAGE_V1 {
        return Err("unknown passage record version".into());
    }
    let flags = b[1];
    if flags & !(FLAG_TITLE | FLAG_LANG | FLAG_META | FLAG_ZSTD) != 0 {
        return Err("unknown passage flags".into());
    }
    let mut r = Reader { b: &b[2..] };
    let id = r.string()?;
    let title = (flags & FLAG_TITLE != 0).then(|| r.string()).transpose()?;
    let lang = (flags & FLAG_LANG != 0).then(|| r.string()).transpose()?;
    let meta_json = (flags & FLAG_META != 0).then(|| r.string()).transpose()?;
    let raw_len = r.u32()? as usize;
    if raw_len > crate::types::MAX_TEXT_BYTES {
        return Err("text length exceeds the limit".into());
    }
    let text = r.bytes()?;
    if !r.b.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(Parts {
        passage: Passage {
            id,
            title,
            text: String::new(),
            lang,
            meta: None,
        },
        meta_json,
        raw_len,
        text,
        zstd: flags & FLAG_ZSTD != 0,
    })
}

fn parse_meta(json: Option<&str>) -> Result<Option<serde_json::Value>, String> {
    json.map(|m| serde_json::from_str(m).map_err(|e| format!("metadata: {e}")))
        .transpose()
}

/// Decodes a whole passage record, text included.
pub(crate) fn decode_passage(b: &[u8]) -> Result<Passage, String> {
    let parts = parse(b)?;
    let text = if parts.zstd {
        let raw =
            zstd::bulk::decompress(parts.text, parts.raw_len).map_err(|e| format!("zstd: {e}"))?;
        if raw.len() != parts.raw_len {
            return Err("text length mismatch".into());
        }
        raw
    } else {
        if parts.text.len() != parts.raw_len {
            return Err("text length mismatch".into());
        }
        parts.text.to_vec()
    };
    let mut p = parts.passage;
    p.text = String::from_utf8(text).map_err(|_| "text is not UTF-8".to_string())?;
    p.meta = parse_meta(parts.meta_json.as_deref())?;
    Ok(p)
}

/// Decodes only the id, language and metadata (no decompression), for filters.
pub(crate) fn decode_passage_meta(b: &[u8]) -> Result<Passage, String> {
    let parts = parse(b)?;
    let mut p = parts.passage;
    p.meta = parse_meta(parts.meta_json.as_deref())?;
    Ok(p)
}

/// Fixed 64-byte encoding of a segment's catalog row.
pub(crate) struct SegmentRecordCodec;

impl SegmentRecordCodec {
    const VERSION: u8 = 1;

    pub fn encode(r: &SegmentRecord) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = Self::VERSION;
        b[1] = r.dtype.code();
        b[4..8].copy_from_slice(&r.dim.to_le_bytes());
        b[8..16].copy_from_slice(&r.rows.to_le_bytes());
        b[16..24].copy_from_slice(&r.file_len.to_le_bytes());
        b[24..32].copy_from_slice(&r.checksum.to_le_bytes());
        b[32..40].copy_from_slice(&r.min_rid.to_le_bytes());
        b[40..48].copy_from_slice(&r.max_rid.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentRecord, String> {
        if b.len() != 64 || b[0] != Self::VERSION {
            return Err("unknown segment record version or length".into());
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(SegmentRecord {
            dtype: Dtype::from_code(b[1]).ok_or("unknown dtype code")?,
            dim: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            rows: u64_at(8),
            file_len: u64_at(16),
            checksum: u64_at(24),
            min_rid: u64_at(32),
            max_rid: u64_at(40),
        })
    }
}

const AUGMENT_V1: u8 = 1;
const AUG_PENDING: u8 = 1;
const AUG_QUERY_VECTORS: u8 = 2;

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(bytemuck::cast_slice(v));
}

/// Encodes an xQG record: `[ver][flags][dim u32][queries u32][e_p f32×dim][Σe_q f32×dim]`
/// then each query as `[lang][text]` strings, then (flag 2) each query's vector.
pub(crate) fn encode_augmentation(a: &Augmentation) -> Vec<u8> {
    let dim = a.passage_vector.len();
    let mut flags = 0;
    if a.pending {
        flags |= AUG_PENDING;
    }
    if a.query_vectors.is_some() {
        flags |= AUG_QUERY_VECTORS;
    }
    let mut out = Vec::with_capacity(10 + 8 * dim);
    out.push(AUGMENT_V1);
    out.push(flags);
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(a.queries.len() as u32).to_le_bytes());
    put_f32s(&mut out, &a.passage_vector);
    put_f32s(&mut out, &a.query_sum);
    for (lang, text) in &a.queries {
        put_bytes(&mut out, lang.as_bytes());
        put_bytes(&mut out, text.as_bytes());
    }
    if let Some(qv) = &a.query_vectors {
        for v in qv {
            put_f32s(&mut out, v);
        }
    }
    out
}

impl Reader<'_> {
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let bytes = n.checked_mul(4).ok_or("length overflow")?;
        if self.b.len() < bytes {
            return Err("truncated".into());
        }
        let (h, t) = self.b.split_at(bytes);
        self.b = t;
        Ok(h.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

/// Decodes an xQG record (see [`encode_augmentation`]).
pub(crate) fn decode_augmentation(b: &[u8]) -> Result<Augmentation, String> {
    if b.len() < 10 || b[0] != AUGMENT_V1 {
        return Err("unknown augmentation record version".into());
    }
    let flags = b[1];
    if flags & !(AUG_PENDING | AUG_QUERY_VECTORS) != 0 {
        return Err("unknown augmentation flags".into());
    }
    let mut r = Reader { b: &b[2..] };
    let dim = r.u32()? as usize;
    let n = r.u32()? as usize;
    if dim == 0 || dim > crate::types::MAX_DIM {
        return Err("dimension out of range".into());
    }
    let passage_vector = r.f32s(dim)?;
    let query_sum = r.f32s(dim)?;
    let mut queries = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        queries.push((r.string()?, r.string()?));
    }
    let query_vectors = if flags & AUG_QUERY_VECTORS != 0 {
        let mut vs = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            vs.push(r.f32s(dim)?);
        }
        Some(vs)
    } else {
        None
    };
    if !r.b.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(Augmentation {
        passage_vector,
        query_sum,
        queries,
        query_vectors,
        pending: flags & AUG_PENDING != 0,
    })
}

/// The byte codec of [`Codes`]: its meta-table record and its segment-header flags.
impl Codes {
    /// The segment-header flags of the codes kept (FORMAT.md, "Segment header").
    pub(crate) fn flags(&self) -> u8 {
        (if self.binary { CODES_BINARY } else { 0 }) | (if self.i8 { CODES_I8 } else { 0 })
    }

    /// The meta-table record (FORMAT.md, "Meta table": `codes`).
    pub(crate) fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.flags();
        b[1] = self.centred as u8;
        b[2] = self.default_first_pass.code();
        b[4..8].copy_from_slice(&self.default_oversample.unwrap_or(0).to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Codes> {
        let b: [u8; 8] = b.try_into().ok()?;
        if b[0] & !(CODES_BINARY | CODES_I8) != 0 || b[1] > 1 || b[3] != 0 {
            return None;
        }
        let over = u32::from_le_bytes(b[4..8].try_into().ok()?);
        let c = Codes {
            binary: b[0] & CODES_BINARY != 0,
            i8: b[0] & CODES_I8 != 0,
            centred: b[1] == 1,
            default_first_pass: FirstPass::from_code(b[2])?,
            default_oversample: (over != 0).then_some(over),
        };
        c.has(c.default_first_pass).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn passage_records_round_trip(id in "\\PC{1,20}", text in "\\PC{1,400}", title in proptest::option::of("\\PC{0,20}"), lang in proptest::option::of("[a-z]{2}")) {
            let meta = serde_json::json!({"k": text.len()});
            let p = Passage { id, title, text, lang, meta: Some(meta.clone()) };
            let enc = encode_passage(&p, Some(&meta.to_string()));
            prop_assert_eq!(decode_passage(&enc).unwrap(), p.clone());
            let m = decode_passage_meta(&enc).unwrap();
            prop_assert_eq!(m.meta, p.meta);
        }

        #[test]
        fn augmentation_records_round_trip(dim in 1usize..6, n in 0usize..4, keep in any::<bool>(), pending in any::<bool>(), seed in any::<u32>()) {
            let f = |i: usize| (seed as f32 + i as f32).sin();
            let qv: Vec<Vec<f32>> = (0..n).map(|q| (0..dim).map(|i| f(q * 7 + i)).collect()).collect();
            let queries = (0..n).map(|q| ("te".to_string(), format!("q{q} ప్రశ్న"))).collect();
            let mut a = Augmentation::new((0..dim).map(f).collect(), queries, &qv, keep);
            a.pending = pending;
            prop_assert_eq!(decode_augmentation(&encode_augmentation(&a)).unwrap(), a);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_passage(&bytes);
            let _ = decode_passage_meta(&bytes);
            let _ = SegmentRecordCodec::decode(&bytes);
            let _ = decode_augmentation(&bytes);
        }
    }
}
