#!/usr/bin/env python3
"""Which matrix products of the default encoder lose most when quantised to int8, measured on
calibration text that no evaluation uses. Chooses `KEEP_FP32` in make_encoder_variants.py.

Calibration: 40 native questions per language from XOR-TyDi's train split that are *not* in
the translation files (`xqdb eval translations` evaluates on those), as queries, and their
English answer spans in groups of five, as passages. Reference: the fp32 fused graph. For every
layer and role (attention, ao, fi, fo) the graph is quantised as the int8 variant is, except that
one node, and the mean cosine of its embeddings to the reference is printed, worst first by how
much keeping that node in fp32 helps.

Run with the set-up's venv: .cache/xqdb/venv/bin/python scripts/int8_sensitivity.py
[--roles fo,fi] [--data ../shared/data]. Takes about 20 s per node on two cores.
"""
import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np
import onnx
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_encoder_variants as mv  # noqa: E402
from convert_e5 import embed_onnx  # noqa: E402
from setup_models import BUNDLE  # noqa: E402

LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]


def calibration_texts(data):
    evaluated = {json.loads(l)["native"] for f in glob.glob(os.path.join(data, "xor-tydi", "translations.*.jsonl"))
                 for l in open(f, encoding="utf-8")}
    rows = [json.loads(l) for l in open(os.path.join(data, "xor-tydi", "xor_train_retrieve_eng_span.jsonl"),
                                         encoding="utf-8")]
    texts = []
    for lang in LANGS:
        mine = [r for r in rows if r["lang"].strip() == lang and r["question"] not in evaluated][:40]
        texts += ["query: " + r["question"] for r in mine]
        answers = [a for r in mine for a in r["answers"]]
        texts += ["passage: " + " ".join(answers[i:i + 5]) for i in range(0, len(answers), 5)]
    return texts


def embed(path, tok, texts):
    """Vectors of `texts` (prefixes included) in batches of 32, with the variants' session settings."""
    graph = mv.session(path, os.cpu_count())
    return np.concatenate([embed_onnx(graph, tok, texts[i:i + 32], "") for i in range(0, len(texts), 32)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--roles", default="attention,ao,fi,fo")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(mv.__file__), "..", "..", "shared", "data"))
    a = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(BUNDLE, "tokenizer.json"))
    tok.enable_truncation(512)
    texts = calibration_texts(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        fused = os.path.join(tmp, "fused.onnx")
        mv.make_fp32_fused(os.path.join(BUNDLE, "model.onnx"), fused)
        ref = embed(fused, tok, texts)
        layers = sum(1 for n in onnx.load(fused, load_external_data=False).graph.node if n.name.endswith(".fo"))

        def loss(keep):
            q = os.path.join(tmp, "q.onnx")
            mv.quantize(fused, q, keep)
            return float(1 - (embed(q, tok, texts) * ref).sum(1).mean())

        everything = loss([])
        print(f"{len(texts)} calibration texts; every product int8: mean 1 - cos {everything:.5f}", flush=True)
        rows = []
        for role in a.roles.split(","):
            for l in range(layers):
                rows.append((loss([f"l{l}.{role}"]), f"l{l}.{role}"))
                print(f"  keep {rows[-1][1]:14s} in fp32: mean 1 - cos {rows[-1][0]:.5f}", flush=True)
        print("helps most first:")
        for v, name in sorted(rows):
            print(f"  {name:14s} {everything - v:+.5f}")
        best = [n for _, n in sorted(rows)[:3]]
        print(f"the three that help most together ({', '.join(best)}): mean 1 - cos {loss(best):.5f}")


if __name__ == "__main__":
    main()
