"""Python reference for benches/generate.rs: the same ONNX files (split layout) with
onnxruntime, the same KV-cache decoding (one encoder pass per prompt, the samples of a
prompt decoded as one batch, top-k sampling), the same token ids. Prints JSON with
prompts/s, queries/s and the share of time outside session.run. Run by the bench:
python generate_reference.py GENERATOR_DIR PROMPTS_JSON SAMPLES TOP_K MAX_LENGTH THREADS"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

gdir, prompts_path = sys.argv[1], sys.argv[2]
samples, top_k, max_length, threads = (int(x) for x in sys.argv[3:7])
cfg = json.load(open(f"{gdir}/config.json"))
layers = cfg.get("num_decoder_layers") or cfg["num_layers"]
passages = json.load(open(prompts_path))  # list of passages, each a list of prompt id lists

opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
mk = lambda f: ort.InferenceSession(f"{gdir}/{f}", opts, providers=["CPUExecutionProvider"])
enc, dec, dec_past = mk("encoder_model.onnx"), mk("decoder_model.onnx"), mk("decoder_with_past_model.onnx")
rng = np.random.default_rng(0)
run_time = 0.0


def run(sess, feeds):
    global run_time
    t = time.perf_counter()
    out = sess.run(None, feeds)
    run_time += time.perf_counter() - t
    return dict(zip([o.name for o in sess.get_outputs()], out))


def generate(prompts):
    T = max(len(p) for p in prompts)
    ids = np.full((len(prompts), T), cfg["pad_token_id"], np.int64)
    mask = np.zeros((len(prompts), T), np.int64)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
        mask[i, : len(p)] = 1
    hidden = run(enc, {"input_ids": ids, "attention_mask": mask})["last_hidden_state"]
    hidden = np.repeat(hidden, samples, axis=0)
    mask = np.repeat(mask, samples, axis=0)
    B = hidden.shape[0]
    nxt = np.full((B, 1), cfg["decoder_start_token_id"], np.int64)
    done = np.zeros(B, bool)
    out = [[] for _ in range(B)]
    past = None
    for step in range(max_length - 1):
        if step == 0:
            o = run(dec, {"input_ids": nxt, "encoder_attention_mask": mask, "encoder_hidden_states": hidden})
            enc_past = {f"past_key_values.{l}.encoder.{kv}": o[f"present.{l}.encoder.{kv}"]
                        for l in range(layers) for kv in ("key", "value")}
        else:
            feeds = {"input_ids": nxt, "encoder_attention_mask": mask, **past, **enc_past}
            o = run(dec_past, feeds)
        past = {f"past_key_values.{l}.decoder.{kv}": o[f"present.{l}.decoder.{kv}"]
                for l in range(layers) for kv in ("key", "value")}
        logits = o["logits"][:, -1, :]
        top = np.argpartition(-logits, top_k - 1, axis=1)[:, :top_k]
        tl = np.take_along_axis(logits, top, 1)
        p = np.exp(tl - tl.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        u = rng.random((B, 1))
        pick = top[np.arange(B), np.minimum((p.cumsum(1) < u).sum(1), top_k - 1)]
        for r in range(B):
            if not done[r]:
                out[r].append(int(pick[r]))
                done[r] = pick[r] == cfg["eos_token_id"]
        nxt = np.where(done, cfg["pad_token_id"], pick)[:, None].astype(np.int64)
        if done.all():
            break
    return out


generate(passages[0][:1])  # warm-up
run_time = 0.0
t = time.perf_counter()
tokens = 0
for prompts in passages:
    tokens += sum(len(r) for r in generate(prompts))
wall = time.perf_counter() - t
n_prompts = sum(len(p) for p in passages)
print(json.dumps({
    "prompts_per_s": n_prompts / wall,
    "queries_per_s": n_prompts * samples / wall,
    "outside_run_share": (wall - run_time) / wall,
    "tokens": tokens,
    "seconds": wall,
}))
