//! `SearchOptions`: what a search asks for (k, mode, fusion, first pass, filters, threads).

use crate::error::{Error, Result};
use crate::scan::Kernel;
use crate::types::{Filter, FirstPass};

/// Per-search settings.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// How many hits to return.
    pub k: usize,
    /// Only rows that match this filter.
    pub filter: Option<Filter>,
    /// Threads to scan with (default: the index's setting, all cores unless changed).
    pub threads: Option<usize>,
    /// Which scoring kernel to use (the scalar one exists for tests and benchmarks).
    pub kernel: Kernel,
    /// Whether text searches apply the index's query adapter, if one is stored (default
    /// true; vector searches never do: apply [`Snapshot::adapter`](crate::Snapshot::adapter) yourself).
    pub use_adapter: bool,
    /// Which codes the search scans first (default: the index's default, exact when it
    /// keeps no codes). Rows without codes (the tail) are always scored exactly.
    pub first_pass: Option<FirstPass>,
    /// The first pass keeps `k × oversample` candidates, rescored exactly with the rows
    /// (default: the index's setting, else [`FirstPass::default_oversample`]).
    pub oversample: Option<usize>,
    /// The language of text queries: they use that language's query adapter when one is
    /// stored (else the shared one). Not a filter on the passages' language. Lexical
    /// searches of an index that stems analyse the query with this language's stemmer.
    pub query_lang: Option<String>,
    /// Dense, lexical or hybrid (text searches; vector searches are dense only).
    pub mode: crate::types::SearchMode,
    /// How hybrid searches merge their two lists (default: reciprocal rank fusion, k 60).
    pub fusion: crate::types::Fusion,
    /// Candidates each list contributes to a hybrid search (default: max(k, 100)).
    pub depth: Option<usize>,
}

impl SearchOptions {
    /// Top `k`, no filter, default threads, SIMD kernels.
    pub fn new(k: usize) -> Self {
        SearchOptions {
            k,
            filter: None,
            threads: None,
            kernel: Kernel::Simd,
            use_adapter: true,
            first_pass: None,
            oversample: None,
            query_lang: None,
            mode: crate::types::SearchMode::Dense,
            fusion: crate::types::Fusion::default(),
            depth: None,
        }
    }

    /// Checks the counts a caller chose: `k` and `depth` at most [`MAX_K`](crate::MAX_K).
    pub(crate) fn check(&self) -> Result<()> {
        for (name, n) in [("k", Some(self.k)), ("depth", self.depth)] {
            if let Some(n) = n.filter(|&n| n > crate::types::MAX_K) {
                return Err(Error::InvalidArgument(format!(
                    "{name} is {n}; a search returns at most {} hits",
                    crate::types::MAX_K
                )));
            }
        }
        Ok(())
    }

    /// Sets the search mode (dense, lexical or hybrid).
    pub fn mode(mut self, mode: crate::types::SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets how hybrid searches fuse their lists.
    pub fn fusion(mut self, fusion: crate::types::Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Sets the candidates each list contributes to a hybrid search.
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = Some(depth.max(1));
        self
    }

    /// Sets the language of text queries (selects a per-language query adapter).
    pub fn query_lang(mut self, lang: impl Into<String>) -> Self {
        self.query_lang = Some(lang.into());
        self
    }

    /// Sets the first pass (exact, i8 or binary codes).
    pub fn first_pass(mut self, pass: FirstPass) -> Self {
        self.first_pass = Some(pass);
        self
    }

    /// Sets the oversampling of a first pass over codes.
    pub fn oversample(mut self, oversample: usize) -> Self {
        self.oversample = Some(oversample);
        self
    }

    /// Whether text searches apply the stored query adapter.
    pub fn adapter(mut self, use_adapter: bool) -> Self {
        self.use_adapter = use_adapter;
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets the thread count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Sets the kernel.
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }
}
