"""The scale-out path of docs/SCALING.md, checked (`make ray-example`): a local Ray job
(python/examples/ray_augment.py) generates and encodes the queries of a Parquet file of
passages in parallel workers; `xqdb import` stores its part files; the result must equal
ingesting the same passages locally with the Python package: the same generated queries,
the same stored vectors (1e-5) and the same top-10s. Writes target/ray-example.json.

The passages are the English questions of examples/data/xor-tydi-sample.jsonl; the searches
are their originals in seven languages. The encoder is the default model unless `--model`
names another bundle folder: it encodes each text on its own (its int8 graph would otherwise
scale a batch's activations together), so the Ray workers' vectors must equal the local ones
exactly; a batch-invariant fp32 bundle is held to 1e-5 (padding to another length may move
the last bits).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import xqdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "examples"))
import ray_augment  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=280)
    ap.add_argument("--generator", default=os.path.join(ROOT, "tests/fixtures/seq2seq/mt5"))
    ap.add_argument("--model", default="default", help='an encoder bundle folder, or "default"')
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    # Fractional, so that Ray's read and write tasks find a CPU besides the workers.
    ap.add_argument("--cpus-per-worker", type=float, default=0.5)
    ap.add_argument("--xqdb", default=os.path.join(ROOT, "target", "release", "xqdb"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "ray-example"))
    ap.add_argument("--json", default=os.path.join(ROOT, "target", "ray-example.json"))
    a = ap.parse_args()
    model = None if a.model == "default" else a.model
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)

    sample = [json.loads(line) for line in open(os.path.join(ROOT, "examples/data/xor-tydi-sample.jsonl"))]
    step = max(1, len(sample) // a.passages)
    picked = sample[::step][: a.passages]
    rows = [
        {"id": f"q{i:05}", "text": r["en"], "lang": "en", "meta": {"from": r["lang"]}}
        for i, r in enumerate(picked)
    ]
    passages = os.path.join(a.work, "passages.parquet")
    pq.write_table(
        pa.Table.from_pylist([dict(r, meta=json.dumps(r["meta"])) for r in rows]), passages
    )
    # The paper's profile (7 languages x 5 samples, top-k 10), another seed than the default.
    profile = {"seed": 7}

    # 1. The Ray job, then `xqdb import` of its part files into an index with the same
    #    profile, generator and encoder.
    out = os.path.join(a.work, "augmented")
    start = time.perf_counter()
    ray_augment.run(passages, out, a.generator, profile, model, a.workers, a.batch_size,
                    a.cpus_per_worker)
    ray_seconds = time.perf_counter() - start
    parts = sorted(f for f in os.listdir(out) if f.endswith(".parquet"))
    remote_dir = os.path.join(a.work, "from-ray")
    xqdb.Index.create(remote_dir, xqg=profile, generator=a.generator, model=model)
    start = time.perf_counter()
    imported = subprocess.run([a.xqdb, "import", remote_dir, out, "--json"], check=True,
                              capture_output=True, text=True)
    import_seconds = time.perf_counter() - start
    report = json.loads(imported.stdout)

    # 2. The same passages ingested locally.
    local_dir = os.path.join(a.work, "local")
    local = xqdb.Index.create(local_dir, xqg=profile, generator=a.generator, model=model)
    start = time.perf_counter()
    with local.writer() as w:
        w.insert_texts(rows)
    local_seconds = time.perf_counter() - start

    # 3. Compare: queries, stored vectors, top-10s.
    remote = xqdb.Index.open(remote_dir, read_only=True)
    ids = [r["id"] for r in rows]
    diff = max(float(np.abs(local.vector(i) - remote.vector(i)).max()) for i in ids)
    tables = []
    for name, index in (("local", local), ("remote", remote)):
        path = os.path.join(a.work, f"{name}.parquet")
        index.export(path)
        t = pq.read_table(path, columns=["id", "generated_queries", "meta"]).sort_by("id")
        tables.append(t)
    same_queries = tables[0].column("generated_queries").to_pylist() == tables[1].column("generated_queries").to_pylist()
    same_meta = tables[0].column("meta").to_pylist() == tables[1].column("meta").to_pylist()
    queries = sum(len(q or []) for q in tables[0].column("generated_queries").to_pylist())
    same_top10 = same_top1 = overlap = 0
    for r in picked:
        hl = [h.id for h in local.search_text(r["native"], k=10)]
        hr = [h.id for h in remote.search_text(r["native"], k=10)]
        same_top10 += hl == hr
        same_top1 += hl[0] == hr[0]
        overlap += len(set(hl) & set(hr)) / 10
    verify = remote.verify()
    result = {
        "passages": len(rows),
        "generated_queries": queries,
        "workers": a.workers,
        "part_files": len(parts),
        "model": model or "default",
        "ray_seconds": ray_seconds,
        "import_seconds": import_seconds,
        "local_seconds": local_seconds,
        "imported_rows": report["report"]["rows"],
        "imported_augmented": report["report"]["augmented"],
        "max_abs_vector_diff": diff,
        "same_queries": same_queries,
        "same_meta": same_meta,
        "same_top10": same_top10,
        "same_top1": same_top1,
        "mean_overlap_at_10": overlap / len(picked),
        "searches": len(picked),
        "verified_passages": verify["passages"],
    }
    print(json.dumps(result, indent=2))
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    ok = (
        report["report"]["rows"] == len(rows)
        and report["report"]["augmented"] == len(rows)
        and same_queries
        and same_meta
        and queries > 0
        and diff <= (0.0 if model is None else 1e-5)
        and same_top10 == len(picked)
    )
    if not ok:
        print("the Ray job's import differs from the local ingest", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
