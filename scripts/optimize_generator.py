#!/usr/bin/env python3
"""Writes a faster copy of a generator folder: a trimmed output projection and/or int8.

    python scripts/optimize_generator.py SRC DST [--vocab VOCAB.json] [--trim] [--int8]
        [--layout split|merged|both]

Runs in the set-up venv (onnx, numpy, onnxruntime's quantisation tools). SRC is an optimum
seq2seq export (T5, mT5, UMT5); DST gets the same files plus `xqdb-generator.json`:

  --vocab F   copies F (made by scripts/make_target_vocab.py) as target_vocab.json; the
              generator then samples only from those pieces (logits outside masked).
  --trim      keeps only the vocabulary's rows of the output projection (`/lm_head/MatMul`,
              in every decoder graph and If branch), so logits have one column per kept piece
              and the projection costs |vocab| / vocab_size of before; the generator maps the
              columns back to ids. Needs --vocab. Same queries as the masked full model.
  --shared-cross-attention
              rewrites each cross-attention of decoder_with_past_model.onnx so that the
              encoder key/values (`past_key_values.*.encoder.*`) and `encoder_attention_mask`
              may have one row per prompt while the other inputs have one row per sample
              (the rows of a prompt consecutive, the same count for every prompt): the samples
              of a prompt read one copy of its cross-attention key/values instead of one each.
              With one row per sample everywhere it computes what the original does.
  --in-place-cache
              rewrites decoder_with_past_model.onnx so that each layer's self-attention cache
              is a buffer with spare room that the caller appends to (a `cache_length` input
              says how many positions hold key/values; `present.*.decoder.*` are the new
              step's only) instead of a concatenation that copies the whole cache every step.
              The same results up to rounding.
  --int8      ONNX Runtime's dynamic int8 quantisation (per output channel) of every matrix
              product with a constant weight and of the large embedding tables, in the encoder
              and the decoders. Activations are quantised at run time per row (symmetric,
              max |x| / 127), so that a row's result does not depend on the batch around it
              (ONNX Runtime's own dynamic quantisation scales the whole batch by one factor;
              --per-tensor keeps that).

The format of the folder and its manifest is in format/FORMAT.md ("Generator folders").
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SPLIT = ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]
MERGED = ["encoder_model.onnx", "decoder_model_merged.onnx"]
MANIFEST = "xqdb-generator.json"
# Gathers over smaller tables (T5's relative position buckets) stay fp32.
MIN_QUANTISED_TABLE = 1 << 20


def subgraphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from subgraphs(attr.g)
            for g in attr.graphs:
                yield from subgraphs(g)


def trim_logits(model, ids):
    """Points every `... -> logits` MatMul at the kept columns of its weight."""
    inits = {i.name: i for i in model.graph.initializer}
    made = {}
    found = 0
    for graph in subgraphs(model.graph):
        for node in graph.node:
            if node.op_type != "MatMul" or "logits" not in node.output:
                continue
            w = node.input[1]
            if w not in made:
                if w not in inits:
                    raise SystemExit(f"the logits MatMul's weight {w} is not an initializer")
                full = numpy_helper.to_array(inits[w])
                if full.ndim != 2:
                    raise SystemExit(f"the logits weight {w} has shape {full.shape}")
                if max(ids) >= full.shape[1]:
                    raise SystemExit(f"vocabulary ids reach {max(ids)}, logits have {full.shape[1]}")
                name = f"{w}_trimmed"
                model.graph.initializer.append(
                    numpy_helper.from_array(np.ascontiguousarray(full[:, ids]), name)
                )
                made[w] = name
            node.input[1] = made[w]
            found += 1
        for out in list(graph.output) + list(graph.value_info):
            if out.name == "logits":
                dims = out.type.tensor_type.shape.dim
                if dims:
                    dims[-1].Clear()
                    dims[-1].dim_value = len(ids)
    if not found:
        raise SystemExit("no MatMul producing `logits` found")
    used = {i for g in subgraphs(model.graph) for n in g.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return found


def share_cross_attention(model):
    """Lets the cross-attention queries of S consecutive rows share one row of key/values.

    In each layer the query, [B, H, 1, d] with B = P·S rows, is reshaped to [P, S, H, d] and
    transposed to [P, H, S, d] before the product with the keys ([P, H, d, L]); the mask
    bias ([P, 1|H, 1, L]) broadcasts over S, the product with the values gives [P, H, S, d],
    and the existing transpose and reshape turn that into [B, 1, H·d] in row order.
    P is read from the key input at run time, so P = B (S = 1) is the original graph.
    """
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    done = 0
    new_nodes = []
    for node in g.node:
        if node.op_type == "MatMul" and "EncDecAttention/MatMul" in node.name and not node.name.endswith("MatMul_1"):
            q, kt = node.input
            key_t = producers.get(kt)
            if key_t is None or key_t.op_type != "Transpose" or not key_t.input[0].startswith("past_key_values."):
                raise SystemExit(f"{node.name}: the keys do not come from a past_key_values input")
            key = key_t.input[0]
            tag = node.name.rsplit("/", 1)[0] + "/shared"
            heads_dim = [
                i for i in g.input if i.name == key
            ][0].type.tensor_type.shape.dim
            heads, head_dim = heads_dim[1].dim_value, heads_dim[3].dim_value
            if not heads or not head_dim:
                raise SystemExit(f"{key}: heads and head size must be fixed in the graph")
            rest = f"{tag}/rest"
            g.initializer.append(
                onnx.numpy_helper.from_array(np.array([-1, heads, head_dim], np.int64), rest)
            )
            new_nodes.append((node, [
                helper.make_node("Shape", [key], [f"{tag}/rows"], name=f"{tag}/Shape", start=0, end=1),
                helper.make_node("Concat", [f"{tag}/rows", rest], [f"{tag}/shape"], name=f"{tag}/Concat", axis=0),
                helper.make_node("Reshape", [q, f"{tag}/shape"], [f"{tag}/q4"], name=f"{tag}/Reshape"),
                helper.make_node("Transpose", [f"{tag}/q4"], [f"{tag}/q"], name=f"{tag}/Transpose", perm=[0, 2, 1, 3]),
            ]))
            node.input[0] = f"{tag}/q"
            done += 1
    for node, extra in new_nodes:
        at = list(g.node).index(node)
        for k, n in enumerate(extra):
            g.node.insert(at + k, n)
    if not done:
        raise SystemExit("no cross-attention (EncDecAttention/MatMul) found")
    return done


def in_place_cache(model):
    """Lets the self-attention cache of decoder_with_past_model.onnx grow in place.

    optimum's graph concatenates each layer's past key/values with the new step's and
    returns the whole cache, copying all of it every step. Rewritten, the past inputs are
    buffers whose first `cache_length` positions (a new int64 [1] input) hold the cache and
    whose other positions are spare room (zeros), and `present.*.decoder.*` are the new
    step's key/values only ([B, H, 1, d]); the caller writes them into the buffers. Scores
    are [q·buffer, q·new key] with the spare positions masked; the position bias is the
    original graph's (computed for `cache_length` + 1 keys), so the result is the original's
    up to rounding.
    """
    g = model.graph
    mk = helper.make_node
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    layers = sorted({int(i.name.split('.')[1]) for i in g.input if i.name.startswith('past_key_values.') and i.name.endswith('.decoder.key')})
    if not layers:
        raise SystemExit("no past_key_values.*.decoder.key inputs")
    T = "xqdb_cache"
    g.input.append(helper.make_tensor_value_info("cache_length", TensorProto.INT64, [1]))
    inits = {
        f"{T}/zero": np.array([0], np.int64), f"{T}/one": np.array([1], np.int64),
        f"{T}/ones2": np.array([1, 1], np.int64), f"{T}/last": np.array([-1], np.int64),
        f"{T}/big": np.array([np.iinfo(np.int64).max], np.int64),
        f"{T}/mask": np.array([np.finfo(np.float32).min], np.float32),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    new = [
        mk("Shape", ["past_key_values.0.decoder.key"], [f"{T}/cap"], name=f"{T}/Capacity", start=2, end=3),
        mk("Add", ["cache_length", f"{T}/one"], [f"{T}/len1"], name=f"{T}/Len1"),
        mk("Concat", [f"{T}/ones2", "cache_length", f"{T}/one"], [f"{T}/pshape"], name=f"{T}/PastShape", axis=0),
        mk("ConstantOfShape", [f"{T}/pshape"], [f"{T}/past_probe"], name=f"{T}/PastProbe"),
        mk("Concat", [f"{T}/ones2", f"{T}/len1", f"{T}/one"], [f"{T}/kshape"], name=f"{T}/KeyShape", axis=0),
        mk("ConstantOfShape", [f"{T}/kshape"], [f"{T}/key_probe"], name=f"{T}/KeyProbe"),
    ]
    initializers = {i.name: i for i in g.initializer}

    def constant(name):
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        n = producers.get(name)
        if n is not None and n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            return numpy_helper.to_array(n.attribute[0].t)
        return None

    # The probes stand in for the cache where only its length is read: checked, not assumed.
    def only_shape_dim2(tensor_consumers, what):
        for n in tensor_consumers:
            if n.op_type != "Shape" or n.attribute:
                raise SystemExit(f"{what} is read by {n.op_type} {n.name}, expected only Shape")
            for m in consumers.get(n.output[0], []):
                index = constant(m.input[1]) if m.op_type == "Gather" and len(m.input) > 1 else None
                ok = index is not None and index.size == 1 and int(index.reshape(-1)[0]) in (2, -2)
                if not ok:
                    raise SystemExit(f"the shape of {what} is read by {m.op_type} {m.name}, expected its length (dim 2) only")
    bias = None
    drop = set()
    for l in layers:
        pk, pv = f"past_key_values.{l}.decoder.key", f"past_key_values.{l}.decoder.value"
        ok_, ov_ = f"present.{l}.decoder.key", f"present.{l}.decoder.value"
        ck, cv = producers[ok_], producers[ov_]
        if ck.op_type != "Concat" or ck.input[0] != pk or cv.op_type != "Concat" or cv.input[0] != pv:
            raise SystemExit(f"layer {l}: present key/values are not Concat(past, new)")
        new_k, new_v = ck.input[1], cv.input[1]
        drop.update([ck.name, cv.name])
        new.append(mk("Identity", [new_k], [ok_], name=f"{T}/{l}/NewKey"))
        new.append(mk("Identity", [new_v], [ov_], name=f"{T}/{l}/NewValue"))
        other = [n for n in consumers.get(pk, []) + consumers.get(pv, []) if n is not ck and n is not cv]
        only_shape_dim2(other, pk)
        for n in other:
            n.input[0] = f"{T}/past_probe"
        tk = [n for n in consumers.get(ok_, []) if n.op_type == "Transpose"]
        if len(tk) != 1:
            raise SystemExit(f"layer {l}: the present key feeds {len(tk)} transposes")
        tk = tk[0]
        others = [n for n in consumers.get(ok_, []) if n is not tk]
        only_shape_dim2(others, ok_)
        for n in others:
            n.input[0] = f"{T}/key_probe"
        scores = [n for n in consumers.get(tk.output[0], [])]
        if len(scores) != 1 or scores[0].op_type != "MatMul":
            raise SystemExit(f"layer {l}: the transposed key does not feed one MatMul")
        sm = scores[0]
        q = sm.input[0]
        tk.input[0] = pk
        s_out = sm.output[0]
        sm.output[0] = f"{T}/{l}/s_buf"
        new += [
            mk("Mul", [q, new_k], [f"{T}/{l}/qk_new"], name=f"{T}/{l}/QKNew"),
            mk("ReduceSum", [f"{T}/{l}/qk_new", f"{T}/last"], [f"{T}/{l}/s_new"], name=f"{T}/{l}/ScoreNew", keepdims=1),
            mk("Concat", [f"{T}/{l}/s_buf", f"{T}/{l}/s_new"], [s_out], name=f"{T}/{l}/Scores", axis=-1),
        ]
        adds = consumers.get(s_out, [])
        if len(adds) != 1 or adds[0].op_type != "Add":
            raise SystemExit(f"layer {l}: the scores do not feed one Add (the position bias)")
        b = adds[0].input[1]
        if bias is not None and b != bias:
            raise SystemExit(f"layer {l}: another position bias ({b} vs {bias})")
        bias = b
        adds[0].input[1] = f"{T}/bias"
        av = [n for n in consumers.get(ov_, []) if n.op_type == "MatMul"]
        if len(av) != 1 or [n for n in consumers.get(ov_, []) if n is not av[0]]:
            raise SystemExit(f"layer {l}: the present value is not read by one MatMul only")
        av = av[0]
        probs = av.input[0]
        o = av.output[0]
        av.input[0] = f"{T}/{l}/p_buf"
        av.input[1] = pv
        av.output[0] = f"{T}/{l}/o_buf"
        new += [
            mk("Slice", [probs, f"{T}/zero", f"{T}/cap", f"{T}/last"], [f"{T}/{l}/p_buf"], name=f"{T}/{l}/ProbsBuf"),
            mk("Slice", [probs, f"{T}/cap", f"{T}/big", f"{T}/last"], [f"{T}/{l}/p_new"], name=f"{T}/{l}/ProbsNew"),
            mk("Mul", [f"{T}/{l}/p_new", new_v], [f"{T}/{l}/o_new"], name=f"{T}/{l}/OutNew"),
            mk("Add", [f"{T}/{l}/o_buf", f"{T}/{l}/o_new"], [o], name=f"{T}/{l}/Out"),
        ]
    # The bias over keys 0..t (t = cache_length, the new key at t) becomes
    # [bias[0..t), masked × (capacity - t), bias[t]]: scores are [buffer (capacity), new].
    new += [
        mk("Shape", [bias], [f"{T}/bshape"], name=f"{T}/BiasShape"),
        mk("Sub", [f"{T}/cap", "cache_length"], [f"{T}/spare"], name=f"{T}/Spare"),
        mk("Slice", [f"{T}/bshape", f"{T}/zero", f"{T}/last"], [f"{T}/blead"], name=f"{T}/BiasLead"),
        mk("Concat", [f"{T}/blead", f"{T}/spare"], [f"{T}/mshape"], name=f"{T}/MaskShape", axis=0),
        mk("Expand", [f"{T}/mask", f"{T}/mshape"], [f"{T}/maskfill"], name=f"{T}/MaskFill"),
        mk("Slice", [bias, f"{T}/zero", "cache_length", f"{T}/last"], [f"{T}/bpast"], name=f"{T}/BiasPast"),
        mk("Slice", [bias, "cache_length", f"{T}/len1", f"{T}/last"], [f"{T}/bnew"], name=f"{T}/BiasNew"),
        mk("Concat", [f"{T}/bpast", f"{T}/maskfill", f"{T}/bnew"], [f"{T}/bias"], name=f"{T}/Bias", axis=-1),
    ]
    nodes = [n for n in g.node if n.name not in drop] + new
    del g.node[:]
    g.node.extend(nodes)
    for o in g.output:
        if o.name.startswith("present.") and ".decoder." in o.name:
            o.type.tensor_type.shape.dim[2].ClearField("dim_param")
            o.type.tensor_type.shape.dim[2].dim_value = 1
    del g.value_info[:]
    # Topological order (the new nodes were appended).
    avail = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(g.node)
    out = []
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                out.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise SystemExit(f"cycle or missing input: {rest[0].name} {list(rest[0].input)}")
        pending = rest
    del g.node[:]
    g.node.extend(out)
    return len(layers)


def per_row_activations(model):
    """Quantises activations per row (the last axis) instead of per tensor.

    ONNX Runtime's dynamic quantisation scales a matrix product's whole input by one factor,
    so a row's result depends on the other rows of the batch. Each DynamicQuantizeLinear is
    replaced by symmetric per-row quantisation to uint8 around 128: s = max|x| / 127 over
    the row, q = round(x / s) + 128 (saturated), zero point 128; the scale, now [..., 1],
    broadcasts in the products that follow. A row's result then depends on that row only,
    in any batch. The input is viewed as [rows, K] so that one QuantizeLinear with a scale
    per row (per-axis, axis 0) does the division, rounding and shift in one pass.
    """
    g = model.graph
    # ReduceMax takes its axes as an input from opset 18, as an attribute before.
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    g.initializer.extend([
        onnx.numpy_helper.from_array(np.array([-1], np.int64), "xqdb_rowq/axes"),
        onnx.numpy_helper.from_array(np.array([1], np.int64), "xqdb_rowq/one"),
        onnx.numpy_helper.from_array(np.array(1e-30, np.float32), "xqdb_rowq/eps"),
        onnx.numpy_helper.from_array(np.array(127.0, np.float32), "xqdb_rowq/127"),
        onnx.numpy_helper.from_array(np.array(128, np.uint8), "xqdb_rowq/zp"),
    ])
    done = 0
    renamed = {}
    # Innermost graphs first: rebuilding a graph's node list copies its nodes, so a branch
    # edited after its If node was copied would be lost.
    for graph in reversed(list(subgraphs(g))):
        nodes = list(graph.node)
        out = []
        for n in nodes:
            if n.op_type != "DynamicQuantizeLinear":
                out.append(n)
                continue
            x = n.input[0]
            q, scale, zp = n.output
            # Unique names: If branches repeat the quantiser's node names.
            t = f"xqdb_rowq/{done}"
            mk = helper.make_node
            out.extend([
                mk("Shape", [x], [f"{t}/shape"], name=f"{t}/Shape"),
                mk("Shape", [x], [f"{t}/lead"], name=f"{t}/Lead", start=0, end=-1),
                mk("Shape", [x], [f"{t}/k"], name=f"{t}/K", start=-1),
                mk("Concat", ["xqdb_rowq/axes", f"{t}/k"], [f"{t}/shape2"], name=f"{t}/Shape2", axis=0),
                mk("Reshape", [x, f"{t}/shape2"], [f"{t}/x2"], name=f"{t}/Rows"),
                mk("Abs", [f"{t}/x2"], [f"{t}/abs"], name=f"{t}/Abs"),
                (mk("ReduceMax", [f"{t}/abs", "xqdb_rowq/axes"], [f"{t}/max"], name=f"{t}/ReduceMax", keepdims=0)
                 if opset >= 18 else
                 mk("ReduceMax", [f"{t}/abs"], [f"{t}/max"], name=f"{t}/ReduceMax", keepdims=0, axes=[-1])),
                mk("Max", [f"{t}/max", "xqdb_rowq/eps"], [f"{t}/pos"], name=f"{t}/Max"),
                mk("Div", [f"{t}/pos", "xqdb_rowq/127"], [f"{t}/s"], name=f"{t}/Scale"),
                mk("Shape", [f"{t}/s"], [f"{t}/n"], name=f"{t}/N"),
                mk("Expand", ["xqdb_rowq/zp", f"{t}/n"], [f"{t}/zp"], name=f"{t}/ZeroPoints"),
                mk("QuantizeLinear", [f"{t}/x2", f"{t}/s", f"{t}/zp"], [f"{t}/q"], name=f"{t}/Quantize", axis=0),
                mk("Reshape", [f"{t}/q", f"{t}/shape"], [q], name=f"{t}/Unrows"),
                mk("Concat", [f"{t}/lead", "xqdb_rowq/one"], [f"{t}/sshape"], name=f"{t}/ScaleShape", axis=0),
                mk("Reshape", [f"{t}/s", f"{t}/sshape"], [scale], name=f"{t}/ScaleRows"),
            ])
            renamed[zp] = "xqdb_rowq/zp"
            done += 1
        del graph.node[:]
        graph.node.extend(out)
    # Consumers of a zero point may sit in a subgraph (If branches of merged decoders).
    for graph in subgraphs(g):
        for m in graph.node:
            for k, i in enumerate(m.input):
                if i in renamed:
                    m.input[k] = renamed[i]
    # Shapes recorded for the old per-tensor scales (scalars) are stale, in every graph.
    for graph in subgraphs(g):
        keep = [vi for vi in graph.value_info if not vi.name.endswith(("_scale", "_zero_point", "scales_mul:0"))]
        del graph.value_info[:]
        graph.value_info.extend(keep)
    return done


def save(model, path: Path):
    try:
        onnx.save(model, str(path))
    except ValueError:  # over protobuf's 2 GB
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data")


def quantize(src: Path, dst: Path, per_row: bool = True):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    small_gathers = [
        n.name
        for g in subgraphs(model.graph)
        for n in g.node
        if n.op_type == "Gather" and sizes.get(n.input[0], 0) < MIN_QUANTISED_TABLE
    ]
    del model
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul", "Gather"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=small_gathers,
        extra_options={"MatMulConstBOnly": True, "EnableSubgraph": True},
    )
    if per_row:
        model = onnx.load(str(dst))
        n = per_row_activations(model)
        save(model, dst)
        print(f"{dst.name}: {n} activation quantisations per row", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--vocab", type=Path)
    ap.add_argument("--trim", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--shared-cross-attention", action="store_true")
    ap.add_argument("--in-place-cache", action="store_true")
    ap.add_argument("--per-tensor", action="store_true", help="with --int8: one activation scale per tensor")
    ap.add_argument("--layout", choices=["split", "merged", "both"], default="both")
    args = ap.parse_args()
    if args.trim and not args.vocab:
        ap.error("--trim needs --vocab")
    if args.src.resolve() == args.dst.resolve():
        ap.error("DST must differ from SRC")
    config = json.loads((args.src / "config.json").read_text(encoding="utf-8"))
    args.dst.mkdir(parents=True, exist_ok=True)
    for f in args.src.iterdir():
        if f.is_file() and f.suffix in (".json", ".model") and f.name != MANIFEST:
            shutil.copy(f, args.dst / f.name)
    ids = None
    if args.vocab:
        vocab = json.loads(args.vocab.read_text(encoding="utf-8"))
        if vocab.get("format") != "xqdb-target-vocab" or vocab.get("version") != 1:
            raise SystemExit(f"{args.vocab} is not an xqdb-target-vocab version 1 file")
        if vocab["vocab_size"] != config["vocab_size"]:
            raise SystemExit(
                f"{args.vocab} is for {vocab['vocab_size']} pieces, the model has {config['vocab_size']}"
            )
        ids = vocab["ids"]
        if args.vocab.resolve() != (args.dst / "target_vocab.json").resolve():
            shutil.copy(args.vocab, args.dst / "target_vocab.json")
    names = {"split": SPLIT, "merged": MERGED, "both": SPLIT + MERGED[1:]}[args.layout]
    done = []
    with tempfile.TemporaryDirectory(dir=args.dst) as tmp:
        for name in names:
            src = args.src / name
            if not src.exists():
                continue
            cur = src
            share = args.shared_cross_attention and name == "decoder_with_past_model.onnx"
            in_place = args.in_place_cache and name == "decoder_with_past_model.onnx"
            if (args.trim and name != "encoder_model.onnx") or share or in_place:
                model = onnx.load(str(src))
                if args.trim:
                    n = trim_logits(model, ids)
                    print(f"{name}: {n} logits projection(s) trimmed to {len(ids)} columns", file=sys.stderr)
                if share:
                    n = share_cross_attention(model)
                    print(f"{name}: {n} cross-attentions share key/values across samples", file=sys.stderr)
                if in_place:
                    n = in_place_cache(model)
                    print(f"{name}: {n} self-attention caches appended in place", file=sys.stderr)
                cur = Path(tmp) / name
                save(model, cur)
                del model
            out = args.dst / name
            if args.int8:
                if cur == src:
                    # The quantiser writes a shape-inferred copy beside its input: link the
                    # source into the private temporary folder so that runs sharing a source
                    # folder (or a read-only one) do not meet there.
                    cur = Path(tmp) / name
                    cur.symlink_to(src.resolve())
                    data = args.src / (name + "_data")
                    if data.exists():
                        (Path(tmp) / data.name).symlink_to(data.resolve())
                quantize(cur, out, per_row=not args.per_tensor)
                print(f"{name}: int8", file=sys.stderr)
            elif cur != src:
                shutil.move(str(cur), out)
                data = Path(str(cur) + "_data")
                if data.exists():
                    shutil.move(str(data), args.dst / data.name)
            else:
                shutil.copy(src, out)
                data = args.src / (name + "_data")
                if data.exists():
                    shutil.copy(data, args.dst / data.name)
            done.append(name)
    if "encoder_model.onnx" not in done or len(done) < 2:
        raise SystemExit(f"{args.src} has no {args.layout} layout export (found {done})")
    manifest = {
        "format": "xqdb-generator",
        "version": 1,
        "logits": "trimmed" if args.trim else "full",
        "precision": ("int8-per-tensor" if args.per_tensor else "int8") if args.int8 else "fp32",
        "cross_attention": "per_prompt" if args.shared_cross_attention and "decoder_with_past_model.onnx" in done else "per_row",
        "source": args.src.name,
    }
    if args.in_place_cache and "decoder_with_past_model.onnx" in done:
        # Only when set: readers from before the field refuse it (unknown fields are refused).
        manifest["decoder_cache"] = "in_place"
    if ids is not None:
        manifest["target_vocab"] = "target_vocab.json"
    (args.dst / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"{args.dst}: {', '.join(done)}; {manifest}", file=sys.stderr)


if __name__ == "__main__":
    main()
