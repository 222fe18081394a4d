#!/usr/bin/env python3
"""Makes the variants of the default encoder bundle, each a bundle folder beside it, with its
own parity fixture. Run by setup_models.py in its venv (numpy, onnx, onnxruntime, tokenizers).

- multilingual-e5-small-int8: ONNX Runtime's dynamic quantisation of every MatMul and of the
  250k x 384 word-embedding Gather to int8 weights, per output channel (onnxruntime.quantization
  .quantize_dynamic). Activations stay f32 and are quantised per batch at run time.

Each variant's parity.jsonl holds Python onnxruntime's embeddings of the default bundle's
parity strings with the variant's graph; tests/model_parity.rs checks the Rust encoder
against every installed bundle's fixture.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_e5 import embed_onnx  # noqa: E402
from setup_models import sha256  # noqa: E402


def make_int8(src_model, dst_model):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(src_model, dst_model, op_types_to_quantize=["MatMul", "Gather"], per_channel=True,
                     weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


VARIANTS = {
    "int8": (make_int8, "dynamic int8 (per channel) of every MatMul and the embedding Gather, "
                        "by onnxruntime.quantization.quantize_dynamic"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="the default bundle folder")
    ap.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    a = ap.parse_args()
    src_manifest = json.load(open(os.path.join(a.src, "xqdb-bundle.json")))
    name = f"{src_manifest['name']}-{a.variant}"
    out = os.path.join(os.path.dirname(os.path.abspath(a.src)), name)
    os.makedirs(out, exist_ok=True)
    make, how = VARIANTS[a.variant]
    model = os.path.join(out, "model.onnx")
    make(os.path.join(a.src, src_manifest["model"]), model + ".part.onnx")
    os.replace(model + ".part.onnx", model)
    for f in ["tokenizer.json", "config.json", "NOTICE"]:
        if os.path.exists(os.path.join(a.src, f)):
            shutil.copy(os.path.join(a.src, f), os.path.join(out, f))
    manifest = dict(src_manifest)
    manifest["name"] = name
    manifest["dtype"] = a.variant
    manifest["files"] = {
        f: {"bytes": os.path.getsize(os.path.join(out, f)), "sha256": sha256(os.path.join(out, f))}
        for f in ["model.onnx", "tokenizer.json"]
    }
    manifest["source"] = f"{src_manifest.get('source', '')}; {how}"
    # Parity: the default bundle's strings, embedded by this graph in Python.
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    tok.enable_truncation(src_manifest["max_passage_tokens"])
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    # The default bundle's fixture holds the fp32 vectors of the same strings.
    rows = [json.loads(l) for l in open(os.path.join(a.src, "parity.jsonl"), encoding="utf-8")]
    worst = 1.0
    with open(os.path.join(out, "parity.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            prefix = "query: " if r["kind"] == "query" else "passage: "
            v = embed_onnx(session, tok, [r["text"]], prefix)[0]
            worst = min(worst, float(np.dot(v, r["vector"])))
            f.write(json.dumps({"kind": r["kind"], "text": r["text"], "vector": [float(x) for x in v]},
                               ensure_ascii=False) + "\n")
    with open(os.path.join(out, "xqdb-bundle.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"[variants] {name}: {os.path.getsize(model) / 1e6:.0f} MB, worst cosine to the fp32 bundle "
          f"on the parity strings {worst:.4f}", flush=True)


if __name__ == "__main__":
    main()
