"""Type stubs of the xqdb extension (`xqdb._xqdb`)."""

from typing import Any, Callable, Optional, Sequence

import numpy as np
import numpy.typing as npt

FORMAT_VERSION: int

def default_model_dir() -> str: ...

class XqdbError(Exception): ...
class InvalidInputError(XqdbError): ...
class DuplicateIdError(InvalidInputError): ...
class CorruptError(XqdbError): ...
class NotAnIndexError(XqdbError): ...
class VersionError(XqdbError): ...
class BusyError(XqdbError): ...
class ModelError(XqdbError): ...
class StorageError(XqdbError): ...

class Hit:
    """One search result."""

    id: str
    score: float
    text: str
    title: Optional[str]
    lang: Optional[str]
    meta: Optional[Any]
    dense_score: Optional[float]
    lexical_score: Optional[float]
    snippet: Optional[str]

class Writer:
    """The one writer of an index; as a context manager it commits on success and rolls
    back when the block raises, then releases the writer."""

    def insert_texts(
        self,
        rows: list[dict[str, Any]],
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None: ...
    def upsert_texts(
        self,
        rows: list[dict[str, Any]],
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None: ...
    def insert_vectors(
        self,
        ids: Sequence[str],
        vectors: npt.NDArray[np.float32],
        texts: Optional[Sequence[str]] = None,
        upsert: bool = False,
    ) -> None: ...
    def delete(self, id: str) -> bool: ...
    def commit(self) -> int: ...
    def rollback(self) -> None: ...
    def pending(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Writer": ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool: ...

class Encoder:
    """An encoder model bundle (default: the set-up's default model)."""

    @staticmethod
    def open(path: Optional[str] = None) -> "Encoder": ...
    @property
    def dim(self) -> int: ...
    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]: ...
    def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]: ...

class Augmenter:
    """Query generation and encoding without an index, as an index with the same profile,
    generator and encoder does on insert (the map step of a parallel job)."""

    def __init__(
        self,
        generator: str,
        profile: Optional[bool | dict[str, Any]] = None,
        encoder: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_index(path: str) -> "Augmenter": ...
    @property
    def profile(self) -> dict[str, Any]: ...
    @property
    def dim(self) -> int: ...
    def metadata(self) -> dict[str, str]: ...
    def augment(
        self,
        rows: list[dict[str, Any]],
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> dict[str, Any]: ...

class Index:
    """An index folder: searches from any thread, one writer at a time."""

    @staticmethod
    def open(path: str, read_only: bool = False) -> "Index": ...
    @staticmethod
    def create(
        path: str,
        dim: Optional[int] = None,
        metric: Optional[str] = None,
        lexical: bool = False,
        xqg: Optional[bool | dict[str, Any]] = None,
        generator: Optional[str] = None,
        model: Optional[str] = None,
    ) -> "Index": ...
    def xqg_profile(self) -> Optional[dict[str, Any]]: ...
    def writer(self) -> Writer: ...
    def search_text(
        self,
        query: str,
        k: int = 10,
        lang: Optional[list[str]] = None,
        meta: Optional[dict[str, Any]] = None,
        mode: str = "dense",
        query_lang: Optional[str] = None,
    ) -> list[Hit]: ...
    def search_files(
        self,
        query: str,
        k: int = 10,
        lang: Optional[list[str]] = None,
        meta: Optional[dict[str, Any]] = None,
        mode: str = "dense",
        query_lang: Optional[str] = None,
    ) -> list[tuple[str, float, Hit]]: ...
    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int = 10,
        lang: Optional[list[str]] = None,
        meta: Optional[dict[str, Any]] = None,
    ) -> list[Hit]: ...
    def search_batch(
        self,
        vectors: npt.NDArray[np.float32],
        k: int = 10,
        lang: Optional[list[str]] = None,
        meta: Optional[dict[str, Any]] = None,
    ) -> list[list[Hit]]: ...
    def search_arrays(
        self,
        vectors: npt.NDArray[np.float32],
        k: int = 10,
        lang: Optional[list[str]] = None,
        meta: Optional[dict[str, Any]] = None,
    ) -> tuple[list[list[str]], npt.NDArray[np.float32]]: ...
    def vector(self, id: str) -> Optional[npt.NDArray[np.float32]]: ...
    def export(self, path: str, f16: bool = False) -> dict[str, Any]: ...
    def import_file(self, path: str, upsert: bool = False) -> dict[str, Any]: ...
    def get(self, id: str) -> Optional[dict[str, Any]]: ...
    def stats(self) -> dict[str, Any]: ...
    def verify(self) -> dict[str, Any]: ...
    def compact(self) -> bool: ...
    def __len__(self) -> int: ...
