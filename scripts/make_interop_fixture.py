"""Writes tests/fixtures/interop/pyarrow.parquet: a small file in xqdb's interchange schema
made by pyarrow (not by xqdb), with no xqdb metadata, as an outside job would write it, and
pyarrow.json with what xqdb must read back (vectors L2-normalised, as a cosine index stores
them). Run once with pyarrow installed: python3 scripts/make_interop_fixture.py
"""

import json
import math
import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq

DIM = 8
out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/interop"
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(5)
rows = []
for i in range(40):
    v = [rng.uniform(-1, 1) for _ in range(DIM)]
    rows.append(
        {
            "id": f"ext-{i}",
            "text": f"passage {i} from a cluster job",
            "lang": ["en", "fi", None][i % 3],
            "vec_fused": v,
        }
    )
vec = pa.list_(pa.float32(), DIM)
table = pa.table(
    {
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "text": pa.array([r["text"] for r in rows], pa.string()),
        "lang": pa.array([r["lang"] for r in rows], pa.string()),
        "vec_fused": pa.array([r["vec_fused"] for r in rows], vec),
    }
)
pq.write_table(table, out / "pyarrow.parquet", compression="snappy")
expected = []
for r in rows:
    f32 = table.column("vec_fused").to_pylist()[int(r["id"].split("-")[1])]
    n = math.sqrt(sum(x * x for x in f32))
    expected.append(
        {"id": r["id"], "text": r["text"], "lang": r["lang"], "vec_fused_normalised": [x / n for x in f32]}
    )
(out / "pyarrow.json").write_text(json.dumps({"rows": expected}, indent=1) + "\n")
print("wrote", out / "pyarrow.parquet")
