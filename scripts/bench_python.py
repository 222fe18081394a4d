"""Python package benchmark (`make bench-python`): per-call search latency from Python
against the same calls from Rust (examples/search_latency.rs, same index, same queries), and
exact vector search against LanceDB and Chroma on the same vectors, in one run.

Vectors: N (default 100,000) seeded random unit vectors of 384 dimensions, 200 queries,
k 10, cosine. xqdb and LanceDB scan exactly (LanceDB without an ANN index); Chroma always
builds an HNSW graph, so its recall@10 against the exact answer is reported beside its time.
Text search: 2,100 passages of the bundled XOR-TyDi sample in a text index with the default
model, 200 native questions. Writes target/bench-python.json.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import xqdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("XQDB_BENCH_PY_ROWS", "100000"))
DIM, K, Q = 384, 10, 200


def unit(rng, n):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def per_call(f, queries):
    for q in queries[:20]:
        f(q)  # warm-up
    t = time.perf_counter()
    for q in queries:
        f(q)
    return (time.perf_counter() - t) / len(queries)


def rust_latency(index_dir, vectors_file, texts_file=None):
    exe = os.path.join(ROOT, "target", "release", "examples", "search_latency")
    args = [exe, index_dir, vectors_file] + ([texts_file] if texts_file else [])
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main():
    work = tempfile.mkdtemp(prefix="xqdb-bench-py-")
    rng = np.random.default_rng(5)
    data, queries = unit(rng, N), unit(rng, Q)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :K]
    ids = [f"v{i}" for i in range(N)]
    out = {"rows": N, "dim": DIM, "k": K, "queries": Q}

    # xqdb from Python, and the same index and queries from Rust.
    t = time.perf_counter()
    index = xqdb.Index.create(os.path.join(work, "xqdb"), dim=DIM)
    with index.writer() as w:
        for s in range(0, N, 20000):
            w.insert_vectors(ids[s:s + 20000], data[s:s + 20000])
    out["xqdb_insert_s"] = time.perf_counter() - t
    out["xqdb_python_vector_us"] = per_call(lambda q: index.search(q, k=K), queries) * 1e6
    got = [[int(h.id[1:]) for h in index.search(q, k=K)] for q in queries]
    out["xqdb_recall"] = float(np.mean([len(set(g) & set(e)) / K for g, e in zip(got, exact)]))
    qfile = os.path.join(work, "queries.f32")
    queries.astype("<f4").tofile(qfile)
    del index  # one process at a time holds an index open for writing
    out["xqdb_rust_vector_us"] = rust_latency(os.path.join(work, "xqdb"), qfile)["vector_us"]

    # Text search: the sample's English questions, queried by their native originals.
    rows = [json.loads(l) for l in open(os.path.join(ROOT, "examples", "data", "xor-tydi-sample.jsonl"))]
    text_dir = os.path.join(work, "xqdb-text")
    tindex = xqdb.Index.create(text_dir)
    with tindex.writer() as w:
        w.insert_texts([{"id": f"s{i}", "text": r["en"], "lang": "en"} for i, r in enumerate(rows)])
    native = [r["native"] for r in rows[:: max(1, len(rows) // Q)]][:Q]
    out["xqdb_python_text_us"] = per_call(lambda q: tindex.search_text(q, k=K), native) * 1e6
    tfile = os.path.join(work, "texts.txt")
    with open(tfile, "w") as f:
        f.write("\n".join(native) + "\n")
    unit(rng, 1).astype("<f4").tofile(os.path.join(work, "one.f32"))
    del tindex
    out["xqdb_rust_text_us"] = rust_latency(text_dir, os.path.join(work, "one.f32"), tfile)["text_us"]

    # LanceDB: a table without an ANN index is searched exactly.
    import lancedb
    import pyarrow as pa

    t = time.perf_counter()
    db = lancedb.connect(os.path.join(work, "lance"))
    vec = pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM)
    table = db.create_table("v", data=pa.table({"id": pa.array(ids), "vector": vec}))
    out["lancedb_insert_s"] = time.perf_counter() - t
    search = lambda q: table.search(q).metric("cosine").limit(K).to_arrow()  # noqa: E731
    out["lancedb_vector_us"] = per_call(search, queries) * 1e6
    got = [[int(i[1:]) for i in search(q)["id"].to_pylist()] for q in queries]
    out["lancedb_recall"] = float(np.mean([len(set(g) & set(e)) / K for g, e in zip(got, exact)]))

    # Chroma: HNSW only.
    import chromadb

    t = time.perf_counter()
    client = chromadb.PersistentClient(path=os.path.join(work, "chroma"))
    col = client.create_collection("vectors", metadata={"hnsw:space": "cosine"})
    step = min(5000, client.get_max_batch_size())
    for s in range(0, N, step):
        col.add(ids=ids[s:s + step], embeddings=data[s:s + step])
    out["chroma_insert_s"] = time.perf_counter() - t
    query = lambda q: col.query(query_embeddings=[q], n_results=K)  # noqa: E731
    out["chroma_vector_us"] = per_call(query, queries) * 1e6
    got = [[int(i[1:]) for i in query(q)["ids"][0]] for q in queries]
    out["chroma_recall"] = float(np.mean([len(set(g) & set(e)) / K for g, e in zip(got, exact)]))

    out["python_overhead_vector_us"] = out["xqdb_python_vector_us"] - out["xqdb_rust_vector_us"]
    out["python_overhead_text_us"] = out["xqdb_python_text_us"] - out["xqdb_rust_text_us"]
    out["lancedb_over_xqdb"] = out["lancedb_vector_us"] / out["xqdb_python_vector_us"]
    out["chroma_over_xqdb"] = out["chroma_vector_us"] / out["xqdb_python_vector_us"]
    print(json.dumps(out, indent=2))
    dest = os.path.join(ROOT, "target", "bench-python.json")
    with open(dest, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {dest}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
