"""Interoperability of xqdb's Parquet export with real peers, and export/import throughput.

1. Builds an index of the bundled sample with the default model and an xQG profile (the
   native questions imported as generated queries), and exports it to Parquet.
2. pyarrow reads it (rows, schema, metadata); DuckDB reads it and runs an exact top-10 in SQL
   (array_inner_product); LanceDB (embedded) loads it and runs its exact (flat) top-10. All
   three top-10s must equal xqdb's for the same query vectors.
3. A file written by LanceDB's table (through pyarrow) and one written by DuckDB's COPY import
   into new xqdb indexes whose top-10s equal the original's.
4. Throughput: a pyarrow-written file of N random 384-d rows is imported and exported again.

Run with `make interop` (which makes the virtual environment with pinned pyarrow, duckdb and
lancedb); prints one JSON summary and exits non-zero on any mismatch.
"""

import argparse
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import time

import duckdb
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
XQDB = ROOT / "target/release/xqdb"


def xqdb(*args):
    out = subprocess.run([str(XQDB), *map(str, args), "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"xqdb {' '.join(map(str, args))} failed: {out.stderr}")
    return json.loads(out.stdout)


def xqdb_top10(index, queries, work):
    qfile = work / "queries.jsonl"
    qfile.write_text("".join(json.dumps([float(x) for x in q]) + "\n" for q in queries))
    res = xqdb("search", index, "--vector-file", qfile, "-k", 10)["results"]
    return [[h["id"] for h in hits] for hits in res]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=600)
    ap.add_argument("--rows", type=int, default=200_000, help="rows for the throughput run")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="xqdb-interop-"))
    summary = {"versions": {"pyarrow": pa.__version__, "duckdb": duckdb.__version__, "lancedb": lancedb.__version__}}

    # 1. An index with real embeddings and xQG records.
    sample = [json.loads(l) for l in (ROOT / "examples/data/xor-tydi-sample.jsonl").open()]
    rows = sample[:: max(1, len(sample) // args.passages)][: args.passages]
    add = work / "add.jsonl"
    with add.open("w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"q{i:04d}", "text": r["en"], "lang": "en",
                                "meta": {"source": "xor-tydi", "n": i},
                                "generated_queries": {r["lang"]: [r["native"]]}}) + "\n")
    index = work / "idx"
    xqdb("init", index, "--xqg", "--alpha", "0.2")
    xqdb("add", index, add)
    exported = work / "export.parquet"
    rep = xqdb("export", index, exported)
    n = rep["report"]["rows"]

    # 2a. pyarrow.
    table = pq.read_table(exported)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    dim = int(meta["xqdb.dim"])
    want_cols = ["id", "title", "text", "lang", "meta", "generated_queries", "vec_passage",
                 "vec_query_sum", "query_count", "vec_fused"]
    assert table.column_names == want_cols, table.column_names
    assert table.num_rows == n == len(rows), (table.num_rows, n)
    assert table.schema.field("vec_fused").type == pa.list_(pa.field("item", pa.float32()), dim)
    summary["pyarrow"] = {"rows": table.num_rows, "dim": dim, "metric": meta["xqdb.metric"],
                          "alpha": meta.get("xqdb.alpha"), "model": meta.get("xqdb.model_fingerprint")}

    # Query vectors: stored passage vectors plus noise, normalised.
    rng = np.random.default_rng(7)
    fused = np.asarray(table.column("vec_fused").combine_chunks().values).reshape(n, dim)
    picks = rng.choice(n, 20, replace=False)
    queries = fused[picks] + rng.normal(0, 0.05, (20, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ours = xqdb_top10(index, queries, work)

    # 2b. DuckDB: exact top-10 in SQL.
    con = duckdb.connect()
    count, qsum, langs = con.execute(
        "SELECT count(*), sum(query_count), count(DISTINCT lang) FROM read_parquet(?)", [str(exported)]).fetchone()
    assert count == n and qsum == n, (count, qsum)
    duck = []
    for q in queries:
        ids = con.execute(
            f"SELECT id FROM read_parquet(?) ORDER BY array_inner_product(vec_fused::FLOAT[{dim}], ?::FLOAT[{dim}]) DESC, id LIMIT 10",
            [str(exported), [float(x) for x in q]]).fetchall()
        duck.append([r[0] for r in ids])
    summary["duckdb"] = {"rows": count, "generated_queries": int(qsum), "languages": langs,
                         "top10_equal": sum(a == b for a, b in zip(ours, duck))}

    # 2c. LanceDB: load the export, exact (flat) search without an index.
    db = lancedb.connect(str(work / "lance"))
    tbl = db.create_table("passages", data=table.select(["id", "text", "lang", "vec_fused"]))
    lance = []
    for q in queries:
        res = tbl.search(q, vector_column_name="vec_fused").metric("dot").limit(10).to_arrow()
        lance.append(res.column("id").to_pylist())
    summary["lancedb"] = {"rows": tbl.count_rows(), "top10_equal": sum(a == b for a, b in zip(ours, lance))}

    # 3. Files written by LanceDB (through pyarrow) and by DuckDB import into xqdb.
    from_lance = work / "from_lance.parquet"
    pq.write_table(tbl.to_arrow(), from_lance)
    from_duck = work / "from_duck.parquet"
    con.execute(f"COPY (SELECT id, text, lang, vec_fused FROM read_parquet('{exported}')) TO '{from_duck}' (FORMAT parquet)")
    for name, f in [("lancedb_written", from_lance), ("duckdb_written", from_duck)]:
        target = work / f"idx-{name}"
        imp = xqdb("import", target, f)
        back = xqdb_top10(target, queries, work)
        summary[name] = {"rows": imp["report"]["rows"], "top10_equal": sum(a == b for a, b in zip(ours, back))}

    # 4. Throughput on N random rows (vectors only).
    big = work / "big.parquet"
    vecs = rng.normal(0, 1, (args.rows, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pq.write_table(pa.table({
        "id": pa.array([f"r{i:08d}" for i in range(args.rows)]),
        "text": pa.array([f"row {i}" for i in range(args.rows)]),
        "vec_fused": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), 384),
    }), big)
    imp = xqdb("import", work / "idx-big", big)
    exp = xqdb("export", work / "idx-big", work / "big-out.parquet")
    exp_ipc = xqdb("export", work / "idx-big", work / "big-out.arrow")
    summary["throughput"] = {
        "rows": args.rows, "dim": 384,
        "import_rows_per_s": round(imp["rows_per_second"]),
        "export_parquet_rows_per_s": round(exp["rows_per_second"]),
        "export_arrow_rows_per_s": round(exp_ipc["rows_per_second"]),
        "parquet_mb": round(exp["report"]["bytes"] / 1e6, 1),
    }
    print(json.dumps(summary, indent=1))
    ok = all(summary[k]["top10_equal"] == len(queries)
             for k in ["duckdb", "lancedb", "lancedb_written", "duckdb_written"])
    sys.exit(0 if ok else "top-10 mismatch")


if __name__ == "__main__":
    main()
