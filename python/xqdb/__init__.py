"""xqdb: embedded cross-lingual search, from Python.

The same index folders as the Rust library and the ``xqdb`` command: open or create one,
write through ``index.writer()`` (a context manager that commits on success and rolls back
when the block raises) and search by text (``search_text``) or by vector (``search``,
``search_batch``). Calls that encode, generate, scan or commit release the GIL.
``Augmenter`` generates and encodes queries without an index (the map step of a parallel
job; ``xqdb.arrow`` writes its output in the schema ``xqdb import`` reads).
"""

import importlib.util
import os


def _find_onnxruntime() -> None:
    """Point xqdb at the ONNX Runtime library of the installed ``onnxruntime`` package
    (unless ``ORT_DYLIB_PATH`` already names one). Nothing is downloaded."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return
    capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
    try:
        names = sorted(os.listdir(capi))
    except OSError:
        return
    for name in names:
        if name.startswith("libonnxruntime.so") or (
            name.startswith("libonnxruntime.") and name.endswith(".dylib")
        ):
            os.environ["ORT_DYLIB_PATH"] = os.path.join(capi, name)
            return


_find_onnxruntime()

from ._xqdb import (  # noqa: E402
    FORMAT_VERSION,
    Augmenter,
    BusyError,
    CorruptError,
    DuplicateIdError,
    Encoder,
    Hit,
    Index,
    InvalidInputError,
    ModelError,
    NotAnIndexError,
    StorageError,
    VersionError,
    Writer,
    XqdbError,
    default_model_dir,
)

__all__ = [
    "FORMAT_VERSION",
    "Augmenter",
    "BusyError",
    "CorruptError",
    "DuplicateIdError",
    "Encoder",
    "Hit",
    "Index",
    "InvalidInputError",
    "ModelError",
    "NotAnIndexError",
    "StorageError",
    "VersionError",
    "Writer",
    "XqdbError",
    "default_model_dir",
]
