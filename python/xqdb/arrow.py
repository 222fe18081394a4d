"""Passages in and out of pyarrow, in the schema ``xqdb export`` writes and ``xqdb import``
reads (format/FORMAT.md, "Interchange files"). Needs ``pyarrow`` (not a dependency of the
package: ``pip install pyarrow``).

``augment_table`` is the map step of a parallel job: a table of passages in, the same
passages with their generated queries and vectors out, ready for ``xqdb import``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa

from ._xqdb import Augmenter

__all__ = ["augment_table", "import_schema", "rows_of"]


def import_schema(dim: int, metadata: Optional[dict[str, str]] = None) -> pa.Schema:
    """The columns ``augment_table`` writes: id, title, text, lang, meta (a JSON string),
    generated_queries (list of {lang, text}), vec_passage and vec_query_sum (``dim`` float32
    values each) and query_count."""
    query = pa.struct(
        [pa.field("lang", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False)]
    )
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("text", pa.string(), nullable=False),
            pa.field("lang", pa.string()),
            pa.field("meta", pa.string()),
            pa.field("generated_queries", pa.list_(pa.field("item", query, nullable=False))),
            pa.field("vec_passage", pa.list_(pa.float32(), dim)),
            pa.field("vec_query_sum", pa.list_(pa.float32(), dim)),
            pa.field("query_count", pa.uint32()),
        ],
        metadata=metadata,
    )


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """The passages of a table with columns id and text (title, lang and meta optional;
    meta a JSON string or a struct) as the dicts ``Writer.insert_texts`` and
    ``Augmenter.augment`` take."""
    columns = set(table.column_names)
    for need in ("id", "text"):
        if need not in columns:
            raise ValueError(f"the table has no {need!r} column (it has {sorted(columns)})")
    rows = []
    for r in table.select([c for c in ("id", "title", "text", "lang", "meta") if c in columns]).to_pylist():
        meta = r.get("meta")
        if isinstance(meta, str):
            r["meta"] = json.loads(meta)
        rows.append(r)
    return rows


def augment_table(
    augmenter: Augmenter,
    table: pa.Table,
    progress: Optional[Callable[[int, int], None]] = None,
) -> pa.Table:
    """Generates and encodes the queries of every passage of ``table`` (see ``rows_of``) and
    returns the passages in the import schema, with ``augmenter.metadata()`` on the schema
    so that ``xqdb import`` checks the model. The stored vectors then equal those of
    inserting the same passages into an index with the augmenter's profile, generator and
    encoder."""
    rows = rows_of(table)
    out = augmenter.augment(rows, progress)
    dim = augmenter.dim
    n = len(rows)

    def vectors(a: np.ndarray) -> pa.Array:
        flat = pa.array(np.ascontiguousarray(a, dtype=np.float32).reshape(-1), type=pa.float32())
        return pa.FixedSizeListArray.from_arrays(flat, dim)

    schema = import_schema(dim, augmenter.metadata())
    meta = [None if r.get("meta") is None else json.dumps(r["meta"], ensure_ascii=False) for r in rows]
    columns = [
        pa.array(out["id"], pa.string()),
        pa.array([r.get("title") for r in rows], pa.string()),
        pa.array([r["text"] for r in rows], pa.string()),
        pa.array([r.get("lang") for r in rows], pa.string()),
        pa.array(meta, pa.string()),
        pa.array(out["generated_queries"], schema.field("generated_queries").type),
        vectors(out["vec_passage"]),
        vectors(out["vec_query_sum"]),
        pa.array(out["query_count"], pa.uint32()),
    ]
    assert all(len(c) == n for c in columns)
    return pa.Table.from_arrays(columns, schema=schema)
