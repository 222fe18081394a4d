//! The redb catalog: table definitions, value codecs and the stored configuration.

mod codec;
mod failure;
mod meta;

pub(crate) use codec::{
    decode_augmentation, decode_passage, decode_passage_meta, encode_augmentation, encode_passage,
    SegmentRecordCodec,
};
pub(crate) use failure::{in_catalog, CatalogResult};
pub(crate) use meta::{
    put, put_adapter, put_lexical, put_profile, read_adapters, read_clean, read_u64, Counters,
    LexicalStats, MetaError, MetaKey, StoreConfig,
};

use redb::{MultimapTableDefinition, TableDefinition};

/// Name of the catalog file inside an index folder.
pub(crate) const CATALOG_FILE: &str = "catalog.redb";

/// Catalog format version written by this build (see FORMAT.md, "Version log").
pub const FORMAT_VERSION: u32 = 7;

/// Store-wide settings and counters.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// External passage id → internal row id.
pub(crate) const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
/// Row id → encoded passage record.
pub(crate) const PASSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("passages");
/// Language tag → row ids (for language filters).
pub(crate) const LANGS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("langs");
/// Row id → f32 little-endian vector, for rows not yet sealed into a segment.
pub(crate) const TAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("tail");
/// Segment id → encoded segment record.
pub(crate) const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// Row ids deleted from segments (dropped by compaction).
pub(crate) const TOMBSTONES: TableDefinition<u64, ()> = TableDefinition::new("tombstones");
/// Row id → xQG record: E(passage), the sum and count of query vectors, the queries
/// (format version 2).
pub(crate) const AUGMENT: TableDefinition<u64, &[u8]> = TableDefinition::new("augment");
/// Row ids whose queries are still to be generated (deferred generation; version 2).
pub(crate) const BACKLOG: TableDefinition<u64, ()> = TableDefinition::new("backlog");
/// Synced file path (relative, `/`-separated) → file record (format version 4).
pub(crate) const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
/// Lexical postings (format version 7): (term, first row id of the block) → a block of up
/// to 128 postings of the term (see `lexical::blocks`).
pub(crate) const LEX_POSTINGS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("lex_postings");
