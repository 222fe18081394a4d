#!/usr/bin/env python3
"""Exact-search peer benchmark: xqdb, faiss IndexFlatIP and usearch exact search on the same
vectors, side by side in one run, reporting ratios and checking that all three return the same
top-10. `python3 scripts/bench_peers.py [--rows 1000000] [--dim 384]` (also `make bench-peers`).

faiss-cpu and usearch come from PyPI into CACHE/peers-venv; vectors are random unit vectors
(seeded), written to CACHE/peers/ as raw little-endian f32 for xqdb's side
(benches/peers.rs)."""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("XQDB_HOME") or os.path.join(REPO, ".cache", "xqdb")
VENV = os.path.join(CACHE, "peers-venv")
WORK = os.path.join(CACHE, "peers")
PACKAGES = ["numpy==2.4.6", "faiss-cpu==1.15.1", "usearch==2.26.6"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".packages")
    if not (os.path.exists(marker) and open(marker).read() == "\n".join(PACKAGES)):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES], check=True)
        open(marker, "w").write("\n".join(PACKAGES))
    return py


def peers(rows, dim):
    """Runs inside the venv: generates data, times faiss and usearch, returns their results."""
    import time
    import numpy as np
    import faiss
    from usearch.index import search as usearch_search, MetricKind

    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((32, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    os.makedirs(WORK, exist_ok=True)
    x.astype("<f4").tofile(os.path.join(WORK, "vectors.f32"))
    q.astype("<f4").tofile(os.path.join(WORK, "queries.f32"))
    threads = os.cpu_count()
    index = faiss.IndexFlatIP(dim)
    index.add(x)
    out = {}

    def median(v):
        return sorted(v)[len(v) // 2]

    for t in sorted({1, threads}):
        faiss.omp_set_num_threads(t)
        index.search(q[:1], 10)
        single = []
        for i in range(15):
            s = time.perf_counter(); index.search(q[i:i + 1], 10); single.append((time.perf_counter() - s) * 1e3)
        batch = []
        for _ in range(3):
            s = time.perf_counter(); index.search(q, 10); batch.append((time.perf_counter() - s) * 1e3)
        out.setdefault("faiss", {})[f"single_ms_{t}t"] = median(single)
        out["faiss"][f"batch32_ms_{t}t"] = median(batch)
        usearch_search(x, q[0], 10, MetricKind.IP, exact=True, threads=t)
        single = []
        for i in range(15):
            s = time.perf_counter(); usearch_search(x, q[i], 10, MetricKind.IP, exact=True, threads=t); single.append((time.perf_counter() - s) * 1e3)
        batch = []
        for _ in range(3):
            s = time.perf_counter(); usearch_search(x, q, 10, MetricKind.IP, exact=True, threads=t); batch.append((time.perf_counter() - s) * 1e3)
        out.setdefault("usearch", {})[f"single_ms_{t}t"] = median(single)
        out["usearch"][f"batch32_ms_{t}t"] = median(batch)
    faiss.omp_set_num_threads(threads)
    out["faiss_top10"] = index.search(q, 10)[1].tolist()
    m = usearch_search(x, q, 10, MetricKind.IP, exact=True, threads=threads)
    out["usearch_top10"] = [list(map(int, m.keys[i])) for i in range(len(q))]
    out["threads"] = threads
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        print(json.dumps(peers(a.rows, a.dim)))
        return
    py = ensure_venv()
    res = subprocess.run([py, __file__, "--inner", "--rows", str(a.rows), "--dim", str(a.dim)], check=True, capture_output=True, text=True)
    theirs = json.loads(res.stdout)
    env = dict(os.environ, XQDB_PEERS_DIR=WORK, XQDB_PEERS_DIM=str(a.dim))
    subprocess.run(["cargo", "bench", "--quiet", "--bench", "peers"], cwd=REPO, env=env, check=True)
    ours = json.load(open(os.path.join(WORK, "xqdb.json")))
    t = theirs["threads"]
    print(f"# exact top-10, {a.rows} x {a.dim} random unit vectors, {t} hardware threads; medians, ms")
    print("| case | xqdb | faiss IndexFlatIP | usearch exact | faiss / xqdb | usearch / xqdb |")
    print("|---|---|---|---|---|---|")
    for key, label in [(f"single_ms_1t", "1 query, 1 thread"), (f"single_ms_{t}t", f"1 query, {t} threads"),
                       (f"batch32_ms_1t", "batch of 32, 1 thread"), (f"batch32_ms_{t}t", f"batch of 32, {t} threads")]:
        x, f, u = ours["timings"][key], theirs["faiss"][key], theirs["usearch"][key]
        print(f"| {label} | {x:.1f} | {f:.1f} | {u:.1f} | {f / x:.2f}x | {u / x:.2f}x |")
    same_f = sum(set(a_) == set(b) for a_, b in zip(ours["top10"], theirs["faiss_top10"]))
    same_u = sum(set(a_) == set(b) for a_, b in zip(ours["top10"], theirs["usearch_top10"]))
    print(f"\nsame top-10 set as faiss: {same_f}/32 queries; as usearch: {same_u}/32 queries")
    if same_f < 32:
        sys.exit("xqdb and faiss disagree on exact top-10")


if __name__ == "__main__":
    main()
