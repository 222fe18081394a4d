#!/usr/bin/env python3
"""Exact-search peer benchmark: xqdb, faiss IndexFlatIP and usearch exact search on the same
vectors, side by side in one run, reporting ratios and checking that all three return the same
top-10; then xqdb's f16 and i8 scans against usearch's f16 and i8 exact search, with recall@10
against the exact f32 top-10.

    python3 scripts/bench_peers.py [--rows 1000000] [--dim 384]   # random unit vectors
    python3 scripts/bench_peers.py --data model                   # the default model's embeddings
    make bench-peers                                              # both

faiss-cpu and usearch come from PyPI into CACHE/peers-venv. `--data random`: seeded random unit
vectors. `--data model`: multilingual-e5-small embeddings (Python onnxruntime, the set-up's
bundle) of the 21,000 English questions of ../shared/data/xor-tydi/translations.*.jsonl as
passages, and 32 of their native-language originals as queries. `--data corpus`: every text in
../shared/data as passages (translations in both languages, training questions, UI strings
in eight languages) and the 2,110 held-out dev questions, never indexed, as queries (recall of
the two-stage searches; 32 of them are timed). Vectors go to CACHE/peers/ as
raw little-endian f32 for xqdb's side (benches/peers.rs)."""
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


def embed_model_data(mode):
    """Runs in the set-up's venv: embeds the translation data with the default bundle."""
    import glob
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    bundle = os.path.join(CACHE, "models", "multilingual-e5-small-fp32")
    m = json.load(open(os.path.join(bundle, "xqdb-bundle.json")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    sess = ort.InferenceSession(os.path.join(bundle, m["model"]), opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(bundle, m["tokenizer"]))
    tok.enable_truncation(m["max_passage_tokens"])

    def encode(texts, prefix):
        out = []
        for i in range(0, len(texts), 64):
            enc = tok.encode_batch([prefix + t for t in texts[i:i + 64]])
            T = max(len(e.ids) for e in enc)
            ids = np.full((len(enc), T), m.get("pad_id", 1), np.int64)
            mask = np.zeros((len(enc), T), np.int64)
            for j, e in enumerate(enc):
                ids[j, :len(e.ids)] = e.ids
                mask[j, :len(e.ids)] = 1
            h = sess.run([m["output"]], {"input_ids": ids, "attention_mask": mask})[0]
            v = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)

    data = os.path.join(REPO, "..", "shared", "data")
    english, native = [], []
    translations = sorted(glob.glob(os.path.join(data, "xor-tydi", "translations.*.jsonl")))
    for path in translations:
        rows = [json.loads(line) for line in open(path, encoding="utf-8")]
        english += [r["en"] for r in rows]
        native += [r["native"] for r in rows[:5]]
    if mode == "model":
        d = os.path.join(WORK, "model")
        os.makedirs(d, exist_ok=True)
        encode(english, m["passage_prefix"]).astype("<f4").tofile(os.path.join(d, "vectors.f32"))
        encode(native[:32], m["query_prefix"]).astype("<f4").tofile(os.path.join(d, "queries.f32"))
        return len(english)
    # corpus: every text of ../shared/data as a passage (translations in both languages,
    # the training questions, the UI strings in all eight languages); the held-out dev
    # questions (never indexed) as queries.
    texts = list(english)
    for path in translations:
        texts += [json.loads(line)["native"] for line in open(path, encoding="utf-8")]
    texts += [json.loads(line)["question"] for line in open(os.path.join(data, "xor-tydi", "xor_train_retrieve_eng_span.jsonl"), encoding="utf-8")]
    for line in open(os.path.join(data, "gettext", "ui_strings.all7.jsonl"), encoding="utf-8"):
        texts += [v for v in json.loads(line).values() if isinstance(v, str) and v.strip()]
    queries = [json.loads(line)["question"] for line in open(os.path.join(data, "xor-tydi", "xor_dev_retrieve_eng_span_v1_1.jsonl"), encoding="utf-8")]
    d = os.path.join(WORK, "corpus")
    os.makedirs(d, exist_ok=True)
    encode(texts, m["passage_prefix"]).astype("<f4").tofile(os.path.join(d, "vectors.f32"))
    qv = encode(queries, m["query_prefix"])
    qv.astype("<f4").tofile(os.path.join(d, "recall_queries.f32"))
    qv[:32].astype("<f4").tofile(os.path.join(d, "queries.f32"))
    return len(texts)


def quantize_i8(v, scale):
    import numpy as np
    return np.clip(np.round(v * scale), -127, 127).astype(np.int8)


def peers(rows, dim, work):
    """Runs inside the venv: times faiss and usearch on the data in `work` (random unit
    vectors are generated when it has none), returns their results."""
    import time
    import numpy as np
    import faiss
    from usearch.index import search as usearch_search, MetricKind

    if os.path.exists(os.path.join(work, "vectors.f32")) and work != WORK:
        x = np.fromfile(os.path.join(work, "vectors.f32"), "<f4").reshape(-1, dim)
        q = np.fromfile(os.path.join(work, "queries.f32"), "<f4").reshape(-1, dim)
    else:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((rows, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q = rng.standard_normal((32, dim), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        os.makedirs(work, exist_ok=True)
        x.astype("<f4").tofile(os.path.join(work, "vectors.f32"))
        q.astype("<f4").tofile(os.path.join(work, "queries.f32"))
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
    dist, ids = index.search(q, 10)
    out["faiss_top10"] = ids.tolist()
    out["faiss_10th"] = dist[:, -1].tolist()
    m = usearch_search(x, q, 10, MetricKind.IP, exact=True, threads=threads)
    out["usearch_top10"] = [list(map(int, m.keys[i])) for i in range(len(q))]
    # Quantized exact search: f16 as is, i8 with one scale for the data (as xqdb does).
    scale = 127.0 / float(np.abs(x).max())
    variants = {"f16": (x.astype(np.float16), q.astype(np.float16)),
                "i8": (quantize_i8(x, scale), quantize_i8(q, 127.0 / float(np.abs(q).max())))}
    for name, (xd, qd) in variants.items():
        r = {}
        usearch_search(xd, qd[0], 10, MetricKind.IP, exact=True, threads=1)
        single = []
        for i in range(15):
            s = time.perf_counter(); usearch_search(xd, qd[i], 10, MetricKind.IP, exact=True, threads=1); single.append((time.perf_counter() - s) * 1e3)
        batch = []
        for _ in range(3):
            s = time.perf_counter(); res = usearch_search(xd, qd, 10, MetricKind.IP, exact=True, threads=threads); batch.append((time.perf_counter() - s) * 1e3)
        r["single_ms_1t"] = median(single)
        r[f"batch32_ms_{threads}t"] = median(batch)
        r["top10"] = [list(map(int, res.keys[i])) for i in range(len(q))]
        out[f"usearch_{name}"] = r
    out.update(two_stage_peers(x, q, threads, median))
    out["threads"] = threads
    out["rows"] = int(x.shape[0])
    return out


def two_stage_peers(x, q, threads, median, k=10):
    """Binary first passes of the peers with the same exact f32 rescoring xqdb does: faiss
    IndexBinaryFlat and usearch's exact Hamming search over sign bits (centred by the mean
    of the first 65,536 rows, like xqdb's codebook), keeping k x the oversampling xqdb uses
    by default; and usearch's i8 exact search with the same rescoring."""
    import time
    import numpy as np
    import faiss
    from usearch.index import search as usearch_search, MetricKind

    over = {"binary": 48, "i8": 4}
    centre = x[:65536].mean(0)
    bits = np.packbits(x > centre, axis=1, bitorder="little")
    qbits = np.packbits(q > centre, axis=1, bitorder="little")
    bindex = faiss.IndexBinaryFlat(x.shape[1])
    bindex.add(bits)
    scale = 127.0 / float(np.abs(x).max())
    x8 = quantize_i8(x, scale)

    def rescore(cands, qi):
        c = np.asarray(cands, dtype=np.int64)
        c = c[c >= 0]
        s = x[c] @ q[qi]
        top = np.argsort(-s, kind="stable")[:k]
        return c[top].tolist()

    def faiss_bin(qs, t):
        faiss.omp_set_num_threads(t)
        _, ids = bindex.search(qbits[qs], k * over["binary"])
        return [rescore(ids[j], qi) for j, qi in enumerate(qs)]

    def usearch_bin(qs, t):
        m = usearch_search(bits, qbits[qs], k * over["binary"], MetricKind.Hamming, exact=True, threads=t)
        keys = m.keys.reshape(len(qs), -1)
        return [rescore(keys[j], qi) for j, qi in enumerate(qs)]

    def usearch_i8(qs, t):
        q8 = quantize_i8(q[qs], 127.0 / float(np.abs(q[qs]).max()))
        m = usearch_search(x8, q8, k * over["i8"], MetricKind.IP, exact=True, threads=t)
        keys = m.keys.reshape(len(qs), -1)
        return [rescore(keys[j], qi) for j, qi in enumerate(qs)]

    out = {}
    for name, fn in [("faiss_binary_rescore", faiss_bin), ("usearch_b1_rescore", usearch_bin), ("usearch_i8_rescore", usearch_i8)]:
        r = {}
        for t in sorted({1, threads}):
            fn([0], t)
            single = []
            for i in range(15):
                s = time.perf_counter(); fn([i % len(q)], t); single.append((time.perf_counter() - s) * 1e3)
            batch = []
            for _ in range(3):
                s = time.perf_counter(); top = fn(list(range(len(q))), t); batch.append((time.perf_counter() - s) * 1e3)
            r[f"single_ms_{t}t"] = median(single)
            r[f"batch32_ms_{t}t"] = median(batch)
        r["top10"] = top
        out[name] = r
    faiss.omp_set_num_threads(threads)
    return out


def recall(got, exact):
    return sum(len(set(g) & set(e)) for g, e in zip(got, exact)) / (10 * len(exact))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--data", choices=["random", "model", "corpus"], default="random")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--embed", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", default=WORK, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.embed:
        print(embed_model_data(a.data))
        return
    if a.inner:
        print(json.dumps(peers(a.rows, a.dim, a.work)))
        return
    py = ensure_venv()
    work = WORK
    what = "random unit vectors"
    if a.data in ("model", "corpus"):
        work = os.path.join(WORK, a.data)
        if not os.path.exists(os.path.join(work, "queries.f32")):
            setup_py = os.path.join(CACHE, "venv", "bin", "python")
            subprocess.run([setup_py, __file__, "--embed", "--data", a.data], check=True)
        what = {"model": "multilingual-e5-small embeddings of XOR-TyDi English questions (32 native-language queries)",
                "corpus": "multilingual-e5-small embeddings of every text in ../shared/data (32 of the held-out dev questions as timed queries)"}[a.data]
    res = subprocess.run([py, __file__, "--inner", "--rows", str(a.rows), "--dim", str(a.dim), "--work", work], check=True, capture_output=True, text=True)
    theirs = json.loads(res.stdout)
    env = dict(os.environ, XQDB_PEERS_DIR=work, XQDB_PEERS_DIM=str(a.dim), XQDB_PEERS_DTYPES="f32,f16,i8")
    subprocess.run(["cargo", "bench", "--quiet", "--bench", "peers"], cwd=REPO, env=env, check=True)
    ours = json.load(open(os.path.join(work, "xqdb.json")))
    t = theirs["threads"]
    print(f"# exact top-10, {theirs['rows']} x {a.dim} {what}, {t} hardware threads; medians, ms")
    print("| case | xqdb | faiss IndexFlatIP | usearch exact | faiss / xqdb | usearch / xqdb |")
    print("|---|---|---|---|---|---|")
    for key, label in [(f"single_ms_1t", "1 query, 1 thread"), (f"single_ms_{t}t", f"1 query, {t} threads"),
                       (f"batch32_ms_1t", "batch of 32, 1 thread"), (f"batch32_ms_{t}t", f"batch of 32, {t} threads")]:
        x, f, u = ours["timings"][key], theirs["faiss"][key], theirs["usearch"][key]
        print(f"| {label} | {x:.1f} | {f:.1f} | {u:.1f} | {f / x:.2f}x | {u / x:.2f}x |")
    same_f = sum(set(a_) == set(b) for a_, b in zip(ours["top10"], theirs["faiss_top10"]))
    # Where the sets differ, the swapped rows must tie with faiss's 10th score (duplicate
    # texts have identical vectors; ties may be broken either way).
    tied = sum(set(a_) != set(b) and min(s_) >= tenth - 1e-5
               for a_, b, s_, tenth in zip(ours["top10"], theirs["faiss_top10"], ours["top10_scores"], theirs["faiss_10th"]))
    same_u = sum(set(a_) == set(b) for a_, b in zip(ours["top10"], theirs["usearch_top10"]))
    print(f"\nsame top-10 set as faiss: {same_f}/32 queries (the other {tied} differ only by rows tied with the 10th score); as usearch: {same_u}/32 queries")
    exact = theirs["faiss_top10"]
    print("\n# quantized exact scans; recall@10 against the exact f32 top-10")
    print(f"| dtype | xqdb 1 query, 1 thread | usearch 1 query, 1 thread | xqdb batch 32, {t} threads | usearch batch 32, {t} threads | usearch / xqdb (1 query) | xqdb recall@10 | usearch recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for dt in ["f16", "i8"]:
        x, u = ours["dtypes"][dt], theirs[f"usearch_{dt}"]
        b = f"batch32_ms_{t}t"
        print(f"| {dt} | {x['single_ms_1t']:.1f} | {u['single_ms_1t']:.1f} | {x[b]:.1f} | {u[b]:.1f} | {u['single_ms_1t'] / x['single_ms_1t']:.2f}x | {recall(x['top10'], exact):.4f} | {recall(u['top10'], exact):.4f} |")
    fp = ours["first_pass"]
    print(f"\n# two-stage search: first pass over codes, exact f32 rescoring of k x oversample rows; medians, ms; recall@10 against the exact top-10 of the same {len(exact)} queries")
    print(f"| method | 1 query, 1 thread | 1 query, {t} threads | batch 32, 1 thread | batch 32, {t} threads | recall@10 | f32 exact / method (1 query, {t} threads) |")
    print("|---|---|---|---|---|---|---|")
    base = ours["timings"][f"single_ms_{t}t"]
    rows = [("xqdb f32 exact", ours["timings"], ours["top10"]),
            (f"xqdb i8 + rescore (x{fp['i8']['default_oversample']})", fp["i8"], fp["i8"]["top10"]),
            (f"xqdb binary + rescore (x{fp['binary']['default_oversample']})", fp["binary"], fp["binary"]["top10"]),
            ("faiss IndexFlatIP", theirs["faiss"], theirs["faiss_top10"]),
            ("faiss IndexBinaryFlat + rescore (x48)", theirs["faiss_binary_rescore"], theirs["faiss_binary_rescore"]["top10"]),
            ("usearch b1 exact + rescore (x48)", theirs["usearch_b1_rescore"], theirs["usearch_b1_rescore"]["top10"]),
            ("usearch i8 exact + rescore (x4)", theirs["usearch_i8_rescore"], theirs["usearch_i8_rescore"]["top10"])]
    for label, r, top in rows:
        cells = [r[f"single_ms_1t"], r[f"single_ms_{t}t"], r[f"batch32_ms_1t"], r[f"batch32_ms_{t}t"]]
        print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {recall(top, exact):.4f} | {base / r[f'single_ms_{t}t']:.1f}x |")
    n = fp["recall_queries"]
    fc = ours["first_pass_compacted"]
    print(f"\n# recall@10 and latency over oversampling ({n} queries: even-numbered tuning half / odd-numbered held-out half); as built (codebook fitted on the first commit's rows) and after a full compaction (codebook fitted on all rows)")
    print(f"| first pass | oversample | 1 query, {t} threads (ms) | recall@10 tuning | recall@10 held-out | compacted: ms | compacted: tuning | compacted: held-out |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ["i8", "binary"]:
        for c, d in zip(fp[name]["curve"], fc[name]["curve"]):
            print(f"| {name} | {c['oversample']} | {c[f'single_ms_{t}t']:.2f} | {c['recall_tune']:.4f} | {c['recall_heldout']:.4f} | {d[f'single_ms_{t}t']:.2f} | {d['recall_tune']:.4f} | {d['recall_heldout']:.4f} |")
    json.dump({"xqdb": ours, "peers": {k_: v for k_, v in theirs.items() if not k_.endswith("top10")}}, open(os.path.join(REPO, "target", f"bench-peers-{a.data}.json"), "w"))
    if same_f + tied < 32:
        sys.exit("xqdb and faiss disagree on exact top-10")


if __name__ == "__main__":
    main()
