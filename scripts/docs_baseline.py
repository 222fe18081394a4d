#!/usr/bin/env python3
"""The naive baseline of the real-document benchmark (examples/docs-bench), computed outside
xqdb with plain ONNX Runtime: every English file embedded whole (its raw bytes as text, the
first 512 tokens, `passage: ` prefix) with the fp32 bundle, every question with `query: `,
cosine similarity, file-level ranks. Writes the rank of each question's answer (1-based;
0 when past 10) as JSON for `cargo run --release --example docs_bench`.

Runs in the set-up's venv (numpy, onnxruntime, tokenizers): `make bench-docs` calls it.
"""
import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

CACHE = os.environ.get("XQDB_HOME", ".cache/xqdb")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="examples/docs-bench")
    ap.add_argument("--bundle", default=os.path.join(CACHE, "models", "multilingual-e5-small-fp32"))
    ap.add_argument("--out", default="target/docs-baseline.json")
    a = ap.parse_args()
    m = json.load(open(os.path.join(a.bundle, "xqdb-bundle.json")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    sess = ort.InferenceSession(os.path.join(a.bundle, m["model"]), opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(a.bundle, m["tokenizer"]))
    tok.enable_truncation(512)

    def embed(texts, prefix, batch=16):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), m["dim"]), np.float32)
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            enc = tok.encode_batch([prefix + texts[i] for i in idx])
            t = max(len(e.ids) for e in enc)
            ids = np.full((len(enc), t), 1, np.int64)
            mask = np.zeros((len(enc), t), np.int64)
            for j, e in enumerate(enc):
                ids[j, :len(e.ids)] = e.ids
                mask[j, :len(e.ids)] = 1
            h = sess.run([m["output"]], {"input_ids": ids, "attention_mask": mask})[0]
            v = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    root = os.path.join(a.bench, "en")
    paths = sorted(os.path.relpath(os.path.join(d, f), root)
                   for d, _, fs in os.walk(root) for f in fs if f.endswith((".md", ".mdx")))
    docs = embed([open(os.path.join(root, p), encoding="utf-8").read() for p in paths], m["passage_prefix"])
    qs = [json.loads(l) for l in open(os.path.join(a.bench, "queries.jsonl"), encoding="utf-8")]
    qv = embed([q["query"] for q in qs], m["query_prefix"], batch=64)
    scores = qv @ docs.T
    at = {p: i for i, p in enumerate(paths)}
    ranks = []
    for q, s in zip(qs, scores):
        top = np.argsort(-s, kind="stable")[:10]
        hit = [k for k, d in enumerate(top) if d == at[q["answer"]]]
        ranks.append(hit[0] + 1 if hit else 0)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump({"what": "whole file, first 512 tokens, fp32, plain ONNX Runtime", "ranks": ranks},
              open(a.out, "w"))
    r1 = sum(r == 1 for r in ranks) / len(ranks)
    print(f"baseline: {len(paths)} files, {len(qs)} questions, R@1 {r1:.3f} (all splits)")


if __name__ == "__main__":
    main()
