#!/usr/bin/env python3
"""End-to-end ingest benchmark: passages per second from a JSONL file to a durable, searchable
index, for xqdb (`xqdb init` + `xqdb add`) and for the Python pipeline a user would otherwise
write (tokenizers + onnxruntime with the same ONNX model, faiss IndexFlatIP for the vectors,
sqlite3 for the texts, both made durable), side by side in one run, on two bundles: the
default (multilingual-e5-small-int8) and the fp32 graph (multilingual-e5-small-fp32, the
default before the variants).

    python3 scripts/bench_ingest.py [--passages 5000]      (needs `make setup`)

The Python side runs in CACHE/ingest-venv (numpy, onnxruntime, tokenizers, faiss-cpu from
PyPI). Passages are ~100-word English texts: runs of consecutive questions from
../shared/data/xor-tydi/translations.*.jsonl. Python batches 32 texts of similar length, xqdb by
its token budget (EncoderOptions); both use every core, and time everything from reading the file (model loading included) until the
data is durable."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("XQDB_HOME") or os.path.join(REPO, ".cache", "xqdb")
VENV = os.path.join(CACHE, "ingest-venv")
WORK = os.path.join(CACHE, "ingest")
PACKAGES = ["numpy==2.4.6", "onnxruntime==1.32.0", "tokenizers==0.23.3", "faiss-cpu==1.15.1"]
BATCH = 32
# The default bundle, then the fp32 graph it is measured against.
BUNDLES = ["multilingual-e5-small-int8", "multilingual-e5-small-fp32"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".packages")
    if not (os.path.exists(marker) and open(marker).read() == "\n".join(PACKAGES)):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES], check=True)
        open(marker, "w").write("\n".join(PACKAGES))
    return py


def make_passages(n, path):
    import glob
    english = []
    for f in sorted(glob.glob(os.path.join(REPO, "..", "shared", "data", "xor-tydi", "translations.*.jsonl"))):
        english += [json.loads(line)["en"] for line in open(f, encoding="utf-8")]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            start = (i * 7) % (len(english) - 7)
            out.write(json.dumps({"id": f"p{i}", "text": " ".join(english[start:start + 7]), "lang": "en"}) + "\n")


def python_pipeline(jsonl, out_dir, bundle):
    """Runs in the venv: the pipeline a user would write."""
    import sqlite3
    import numpy as np
    import onnxruntime as ort
    import faiss
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    bundle = os.path.join(CACHE, "models", bundle)
    m = json.load(open(os.path.join(bundle, "xqdb-bundle.json")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in m.get("session_config", {}).items():
        opts.add_session_config_entry(key, value)
    sess = ort.InferenceSession(os.path.join(bundle, m["model"]), opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(bundle, m["tokenizer"]))
    tok.enable_truncation(m["max_passage_tokens"])
    rows = [json.loads(line) for line in open(jsonl, encoding="utf-8")]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["text"]))
    vecs = np.zeros((len(rows), m["dim"]), np.float32)
    for b in range(0, len(order), BATCH):
        idx = order[b:b + BATCH]
        enc = tok.encode_batch([m["passage_prefix"] + rows[i]["text"] for i in idx])
        T = max(len(e.ids) for e in enc)
        ids = np.full((len(enc), T), m.get("pad_id", 1), np.int64)
        mask = np.zeros((len(enc), T), np.int64)
        for j, e in enumerate(enc):
            ids[j, :len(e.ids)] = e.ids
            mask[j, :len(e.ids)] = 1
        h = sess.run([m["output"]], {"input_ids": ids, "attention_mask": mask})[0]
        v = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        vecs[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
    os.makedirs(out_dir, exist_ok=True)
    index = faiss.IndexFlatIP(m["dim"])
    index.add(vecs)
    db = sqlite3.connect(os.path.join(out_dir, "texts.sqlite"))
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS passages (row INTEGER PRIMARY KEY, id TEXT UNIQUE, text TEXT, lang TEXT)")
    with db:
        db.executemany("INSERT INTO passages VALUES (?, ?, ?, ?)",
                       [(i, r["id"], r["text"], r["lang"]) for i, r in enumerate(rows)])
    db.close()
    path = os.path.join(out_dir, "vectors.faiss")
    faiss.write_index(index, path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    dfd = os.open(out_dir, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=5000)
    ap.add_argument("--inner", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        print(json.dumps({"seconds": python_pipeline(*a.inner)}))
        return
    py = ensure_venv()
    os.makedirs(WORK, exist_ok=True)
    jsonl = os.path.join(WORK, f"passages-{a.passages}.jsonl")
    if not os.path.exists(jsonl):
        make_passages(a.passages, jsonl)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "xqdb"], cwd=REPO, check=True)
    xqdb = os.path.join(REPO, "target", "release", "xqdb")
    results = {}
    sides = [(pipeline, bundle) for bundle in BUNDLES for pipeline in ["xqdb", "python"]]
    for side, bundle in sides:
        out = os.path.join(WORK, f"out-{side}-{bundle}")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        if side == "xqdb":
            subprocess.run([xqdb, "init", out, "--model", bundle, "--json"], check=True, capture_output=True)
            subprocess.run([xqdb, "add", out, jsonl, "--json"], check=True, capture_output=True)
            secs = time.perf_counter() - t0
            hit = json.loads(subprocess.run([xqdb, "search", out, "Where is the capital of Finland?", "-k", "1", "--json"],
                                            check=True, capture_output=True, text=True).stdout)
            assert hit["hits"], "the xqdb index is not searchable"
        else:
            r = subprocess.run([py, __file__, "--inner", jsonl, out, bundle], check=True, capture_output=True, text=True)
            secs = json.loads(r.stdout)["seconds"]
        results[side, bundle] = secs
        shutil.rmtree(out, ignore_errors=True)
    n = a.passages
    base = results["xqdb", BUNDLES[1]]
    print(f"# ingest {n} passages of ~100 words, JSONL to a durable searchable index, {os.cpu_count()} threads")
    print("| pipeline | bundle | seconds | passages/s | / xqdb on fp32 |")
    print("|---|---|---|---|---|")
    for side, bundle in sides:
        what = "xqdb init + add" if side == "xqdb" else "Python: tokenizers + onnxruntime + faiss + sqlite3"
        secs = results[side, bundle]
        print(f"| {what} | {bundle} | {secs:.1f} | {n / secs:.1f} | {base / secs:.2f} |")


if __name__ == "__main__":
    main()
