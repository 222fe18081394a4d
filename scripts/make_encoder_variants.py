#!/usr/bin/env python3
"""Makes the variants of the default encoder bundle, each a bundle folder beside it, with its
own parity fixture. Run by setup_models.py in its venv (numpy, onnx, onnxruntime, tokenizers).

- multilingual-e5-small-fp32-fused: the same weights in a graph written with ONNX Runtime's
  transformer operators (com.microsoft Attention with the three projections in one matrix,
  BiasGelu with the exact erf GELU), so the session does not have to discover them at every
  start. Residual adds and layer norms stay separate: ONNX Runtime 1.32's CPU
  SkipLayerNormalization kernel measured slower than Add + LayerNormalization, so the manifest
  turns that one fusion off for the session (`session_config`).
- multilingual-e5-small-int8: ONNX Runtime's dynamic quantisation of the fused graph: the
  attention projections (QAttention), every MatMul and the 250k x 384 word-embedding Gather get
  int8 weights, per output channel (onnxruntime.quantization.quantize_dynamic); activations stay
  f32 and are quantised per batch at run time.

Each variant's parity.jsonl holds Python onnxruntime's embeddings of the default bundle's
parity strings with the variant's graph and session settings; tests/model_parity.rs checks the
Rust encoder against every installed bundle's fixture.
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


# ONNX Runtime's CPU SkipLayerNormalization is slower than the plain ops it would replace.
SESSION_CONFIG = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"}


def session(model, threads=0):
    """An onnxruntime session of `model` with the variants' SESSION_CONFIG (0 threads: its default)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    for k, v in SESSION_CONFIG.items():
        opts.add_session_config_entry(k, v)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def fused_graph(src_model, attention="fused"):
    """The default graph (scripts/convert_e5.py) rebuilt with the transformer operators.

    `attention="fused"`: each layer's attention is one com.microsoft Attention (the three
    projections inside it); `"mha"`: the three projections are one MatMul of the concatenated
    matrices, split, then com.microsoft MultiHeadAttention (the scores, mask and softmax), so
    that the projection is an ordinary matrix product a quantiser can take.
    """
    from onnx import TensorProto, helper, numpy_helper
    m = onnx.load(src_model)
    t = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    eps = next(a.f for n in m.graph.node if n.op_type == "LayerNormalization" for a in n.attribute
               if a.name == "epsilon")
    heads = int(t["heads_shape"][2])
    layers = 1 + max(int(k[1:].split(".")[0]) for k in t if k[0] == "l" and k[1].isdigit())
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, domain=None, name=None, **attrs):
        name = name or f"n{len(nodes)}_{op}"
        nodes.append(helper.make_node(op, ins, [name + "_out"], name=name, domain=domain, **attrs))
        return name + "_out"

    def residual_norm(y, bias, x, w, b):
        return node("LayerNormalization", [node("Add", [node("Add", [y, const(bias, t[bias])]), x]),
                                           const(w, t[w]), const(b, t[b])], axis=-1, epsilon=eps)

    seq = node("Gather", [node("Shape", ["input_ids"]), const("one_idx", np.array(1, np.int64))], axis=0)
    positions = node("Range", [const("zero", np.array(0, np.int64)), seq, const("one", np.array(1, np.int64))])
    x = node("Add", [node("Gather", [const("emb.word", t["emb.word"]), "input_ids"]),
                     node("Gather", [const("emb.pos", t["emb.pos"]), positions])])
    x = node("LayerNormalization", [node("Add", [x, const("emb.type0", t["emb.type0"])]),
                                    const("emb.ln.w", t["emb.ln.w"]), const("emb.ln.b", t["emb.ln.b"])],
             axis=-1, epsilon=eps)
    # Attention takes the 0/1 mask as int32 and masks with -10000, as the plain graph does.
    mask = node("Cast", ["attention_mask"], to=TensorProto.INT32)
    for l in range(layers):
        p = f"l{l}."
        qkv_w = np.concatenate([t[p + "q.w.T"], t[p + "k.w.T"], t[p + "v.w.T"]], axis=1)
        qkv_b = np.concatenate([t[p + "q.b"], t[p + "k.b"], t[p + "v.b"]])
        if attention == "mha":
            # Three products of the same input (one quantisation of it serves all three) and
            # MultiHeadAttention for the rest: no split copy (its packed QKV layout is not
            # implemented on the CPU).
            q, k, v = (node("Add", [node("MatMul", [x, const(p + f"{w}.w.T", t[p + f"{w}.w.T"])], name=p + w),
                                    const(p + f"{w}.b", t[p + f"{w}.b"])]) for w in "qkv")
            ctx = node("MultiHeadAttention", [q, k, v, "", mask], domain="com.microsoft",
                       name=p + "attention", num_heads=heads)
        else:
            ctx = node("Attention", [x, const(p + "qkv.w", qkv_w), const(p + "qkv.b", qkv_b), mask],
                       domain="com.microsoft", name=p + "attention", num_heads=heads)
        x = residual_norm(node("MatMul", [ctx, const(p + "ao.w.T", t[p + "ao.w.T"])], name=p + "ao"),
                          p + "ao.b", x, p + "aln.w", p + "aln.b")
        mid = node("BiasGelu", [node("MatMul", [x, const(p + "fi.w.T", t[p + "fi.w.T"])], name=p + "fi"),
                                const(p + "fi.b", t[p + "fi.b"])], domain="com.microsoft")
        x = residual_norm(node("MatMul", [mid, const(p + "fo.w.T", t[p + "fo.w.T"])], name=p + "fo"),
                          p + "fo.b", x, p + "oln.w", p + "oln.b")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(nodes, m.graph.name + "-fused", list(m.graph.input), list(m.graph.output), inits)
    out = helper.make_model(graph, opset_imports=[*m.opset_import, helper.make_opsetid("com.microsoft", 1)],
                            producer_name="xqdb make_encoder_variants")
    out.ir_version = m.ir_version
    return out


def make_fp32_fused(src_model, dst_model):
    onnx.save(fused_graph(src_model), dst_model)


# Matrix products left in fp32 in the int8 variant: the FFN output projections whose int8
# activations cost the most (scripts/int8_sensitivity.py, on calibration questions that no
# evaluation uses; see BENCHMARKS.md).
KEEP_FP32 = ["l4.fo", "l0.fo", "l5.fo"]


def quantize(fused_model, dst_model, keep_fp32):
    """Dynamic int8 of the fused graph: QAttention, DynamicQuantizeMatMul, int8 Gather."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(fused_model, dst_model, op_types_to_quantize=["MatMul", "Attention", "Gather"],
                     per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def make_int8(src_model, dst_model):
    fused = dst_model + ".fused.onnx"
    onnx.save(fused_graph(src_model), fused)
    quantize(fused, dst_model, KEEP_FP32)
    os.remove(fused)


# name suffix: (maker, dtype, how it was made)
VARIANTS = {
    "fp32-fused": (make_fp32_fused, "fp32", "the same weights in a graph with ONNX Runtime's Attention and BiasGelu "
                                    "operators, by scripts/make_encoder_variants.py"),
    "int8": (make_int8, "int8", "the fused graph, dynamic int8 (per channel) of the attention projections, every "
                        f"MatMul but {', '.join(KEEP_FP32)}, and the embedding Gather, by "
                        "onnxruntime.quantization.quantize_dynamic"),
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
    make, dtype, how = VARIANTS[a.variant]
    model = os.path.join(out, "model.onnx")
    make(os.path.join(a.src, src_manifest["model"]), model + ".part.onnx")
    os.replace(model + ".part.onnx", model)
    for f in ["tokenizer.json", "config.json", "NOTICE"]:
        if os.path.exists(os.path.join(a.src, f)):
            shutil.copy(os.path.join(a.src, f), os.path.join(out, f))
    manifest = dict(src_manifest)
    manifest["name"] = name
    manifest["dtype"] = dtype
    manifest["files"] = {
        f: {"bytes": os.path.getsize(os.path.join(out, f)), "sha256": sha256(os.path.join(out, f))}
        for f in ["model.onnx", "tokenizer.json"]
    }
    manifest["source"] = f"{src_manifest.get('source', '')}; {how}"
    manifest["session_config"] = SESSION_CONFIG
    # Parity: the default bundle's strings, embedded by this graph in Python.
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    tok.enable_truncation(src_manifest["max_passage_tokens"])
    graph = session(model)
    # The default bundle's fixture holds the fp32 vectors of the same strings.
    rows = [json.loads(l) for l in open(os.path.join(a.src, "parity.jsonl"), encoding="utf-8")]
    worst = 1.0
    with open(os.path.join(out, "parity.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            prefix = "query: " if r["kind"] == "query" else "passage: "
            v = embed_onnx(graph, tok, [r["text"]], prefix)[0]
            worst = min(worst, float(np.dot(v, r["vector"])))
            f.write(json.dumps({"kind": r["kind"], "text": r["text"], "vector": [float(x) for x in v]},
                               ensure_ascii=False) + "\n")
    with open(os.path.join(out, "xqdb-bundle.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"[variants] {name}: {os.path.getsize(model) / 1e6:.0f} MB, worst cosine to the fp32 bundle "
          f"on the parity strings {worst:.4f}", flush=True)


if __name__ == "__main__":
    main()
