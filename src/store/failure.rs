//! Catalog errors that convert with a plain `?` and still name the catalog file.
//!
//! redb has an error type per operation (opening a table, reading, committing …), each
//! `Into<redb::Error>`. Code that works on the catalog runs inside [`in_catalog`]: there `?`
//! turns any redb error, or any xqdb [`Error`], into a [`CatalogFailure`], and the failure
//! leaves [`in_catalog`] as an [`Error::Catalog`] naming the file.

use crate::error::{Error, Result};
use std::path::Path;

/// An error met inside [`in_catalog`], before the catalog's path is attached.
#[derive(Debug)]
pub(crate) enum CatalogFailure {
    /// redb failed.
    Redb(redb::Error),
    /// Anything else (already a complete xqdb error).
    Other(Error),
}

impl<E: Into<redb::Error>> From<E> for CatalogFailure {
    fn from(e: E) -> Self {
        CatalogFailure::Redb(e.into())
    }
}

impl From<Error> for CatalogFailure {
    fn from(e: Error) -> Self {
        CatalogFailure::Other(e)
    }
}

/// Result of work done inside [`in_catalog`].
pub(crate) type CatalogResult<T> = std::result::Result<T, CatalogFailure>;

/// Runs catalog work whose redb errors convert with `?`; they come out as
/// [`Error::Catalog`] naming `catalog`.
pub(crate) fn in_catalog<T>(catalog: &Path, work: impl FnOnce() -> CatalogResult<T>) -> Result<T> {
    work().map_err(|failure| match failure {
        CatalogFailure::Redb(e) => Error::catalog(catalog, e),
        CatalogFailure::Other(e) => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_errors_name_the_catalog_and_other_errors_pass_through() {
        let path = Path::new("/somewhere/catalog.redb");
        let e = in_catalog(path, || -> CatalogResult<()> {
            Err(redb::StorageError::Corrupted("bad page".into()))?
        })
        .unwrap_err();
        assert!(
            matches!(&e, Error::Catalog { path: p, .. } if p == path),
            "{e}"
        );
        assert!(e.to_string().contains("/somewhere/catalog.redb"), "{e}");
        let e = in_catalog(path, || -> CatalogResult<()> {
            Err(Error::InvalidArgument("k is 0".into()))?
        })
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert_eq!(in_catalog(path, || Ok(7)).unwrap(), 7);
    }
}
