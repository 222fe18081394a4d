"""Python reference for benches/encode.rs: the same ONNX file, onnxruntime + tokenizers,
the same batches, the same pooling. Prints passages/s as JSON. Run by the bench with the
set-up's venv python: python encode_reference.py BUNDLE_DIR TEXTS_JSON BATCH THREADS REPS"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

bundle, texts_path, batch, threads, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
manifest = json.load(open(f"{bundle}/xqdb-bundle.json"))
texts = json.load(open(texts_path, encoding="utf-8"))
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
for key, value in manifest.get("session_config", {}).items():
    opts.add_session_config_entry(key, value)
session = ort.InferenceSession(f"{bundle}/{manifest['model']}", opts, providers=["CPUExecutionProvider"])
tok = Tokenizer.from_file(f"{bundle}/{manifest['tokenizer']}")
tok.enable_truncation(manifest["max_passage_tokens"])
pad = manifest.get("pad_id", 1)


def encode(chunk):
    enc = tok.encode_batch([manifest["passage_prefix"] + t for t in chunk])
    T = max(len(e.ids) for e in enc)
    ids = np.full((len(enc), T), pad, np.int64)
    mask = np.zeros((len(enc), T), np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    h = session.run([manifest["output"]], {"input_ids": ids, "attention_mask": mask})[0]
    v = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


encode(texts[:batch])  # warm-up
best = 0.0
for _ in range(reps):
    t = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    best = max(best, len(texts) / (time.perf_counter() - t))
print(json.dumps({"passages_per_s": best}))
