#!/usr/bin/env python3
"""The encoder-side student: fine-tunes the query side of the default encoder by
distillation (the native question's embedding towards the unchanged encoder's embedding of
its English version, and the English version's towards itself, the multilingual
knowledge-distillation recipe for sentence encoders), on the split of
`examples/distill_unseen.rs`, and measures native -> English R@1 / MRR@10 there: per
language, pairs 0..TRAIN train, 600..1600 test, 1600..2600 tune (picks the epoch); a test
(tune) question searches its language's training and test (tune) passages, encoded by the
unchanged encoder. Optionally writes the student as a model bundle (the same ONNX graph with
the trained weights) for query encoding.

Runs in the export venv (torch; `make export-venv`):
  $(EXPORT_VENV)/bin/python scripts/distill_encoder.py [--train 600] [--epochs 3] [--out DIR]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from tokenizers import Tokenizer

LANGS = ["ar", "bn", "fi", "ja", "ko", "ru", "te"]
MAX_TRAIN, TEST, TUNE = 600, 1000, 1000


class E5(torch.nn.Module):
    """The graph of scripts/convert_e5.py in torch, weights taken from its initializers."""

    def __init__(self, weights, cfg):
        super().__init__()
        self.cfg = cfg
        self.w = torch.nn.ParameterDict(
            {k.replace(".", "_"): torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in weights.items()}
        )

    def p(self, name):
        return self.w[name.replace(".", "_")]

    def forward(self, ids, mask):
        H, NH, eps = self.cfg["hidden_size"], self.cfg["num_attention_heads"], self.cfg["layer_norm_eps"]
        hd = H // NH
        B, T = ids.shape
        ln = torch.nn.functional.layer_norm
        x = self.p("emb.word")[ids] + self.p("emb.pos")[:T] + self.p("emb.type0")
        x = ln(x, (H,), self.p("emb.ln.w"), self.p("emb.ln.b"), eps)
        add = ((1.0 - mask.float()) * -10000.0)[:, None, None, :]
        for l in range(self.cfg["num_hidden_layers"]):
            def lin(y, n):
                return y @ self.p(f"l{l}.{n}.w.T") + self.p(f"l{l}.{n}.b")

            def split(y):
                return y.view(B, T, NH, hd).transpose(1, 2)

            q, k, v = split(lin(x, "q")), split(lin(x, "k")), split(lin(x, "v"))
            att = torch.softmax(q @ k.transpose(2, 3) / hd ** 0.5 + add, dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(B, T, H)
            x = ln(x + lin(ctx, "ao"), (H,), self.p(f"l{l}.aln.w"), self.p(f"l{l}.aln.b"), eps)
            mid = lin(x, "fi")
            mid = mid * 0.5 * (1.0 + torch.erf(mid / 2 ** 0.5))
            x = ln(x + lin(mid, "fo"), (H,), self.p(f"l{l}.oln.w"), self.p(f"l{l}.oln.b"), eps)
        m = mask.float()[:, :, None]
        pooled = (x * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def batches(tok, texts, prefix, size):
    for i in range(0, len(texts), size):
        enc = tok.encode_batch([prefix + t for t in texts[i:i + size]])
        T = max(len(e.ids) for e in enc)
        ids = torch.tensor([e.ids + [1] * (T - len(e.ids)) for e in enc], dtype=torch.long)
        mask = torch.tensor([[1] * len(e.ids) + [0] * (T - len(e.ids)) for e in enc], dtype=torch.long)
        yield ids, mask


@torch.no_grad()
def encode(model, tok, texts, prefix, size=64):
    model.eval()
    return torch.cat([model(i, m) for i, m in batches(tok, texts, prefix, size)]).numpy()


def metrics(qv, pv, want, pools):
    """R@1 and MRR@10 per language: qv[lang] (n x d), passages pv (N x d), want[lang] the row
    of each question's passage, pools[lang] the rows searched."""
    out = {}
    for lang in LANGS:
        rows = pools[lang]
        scores = qv[lang] @ pv[rows].T
        rank = []
        for i, w in enumerate(want[lang]):
            target = scores[i, rows.index(w)]
            rank.append(int((scores[i] > target).sum()))
        rank = np.array(rank)
        out[lang] = (float((rank == 0).mean()), float(np.where(rank < 10, 1.0 / (rank + 1), 0).mean()))
    return out


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    home = os.environ.get("XQDB_HOME", os.path.join(here, ".cache", "xqdb"))
    ap.add_argument("--bundle", default=os.path.join(home, "models", "multilingual-e5-small-fp32"))
    ap.add_argument("--data", default=os.path.join(os.path.dirname(here), "shared", "data", "xor-tydi"))
    ap.add_argument("--train", type=int, default=MAX_TRAIN)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", help="write the student (query side) as a model bundle here")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    start = time.time()

    graph = onnx.load(os.path.join(a.bundle, "model.onnx"))
    weights = {}
    for init in graph.graph.initializer:
        v = numpy_helper.to_array(init)
        if re.match(r"^(emb\.|l\d+\.)", init.name) and v.dtype == np.float32 and v.ndim >= 1:
            weights[init.name] = v
    cfg = json.load(open(os.path.join(a.bundle, "config.json")))
    tok = Tokenizer.from_file(os.path.join(a.bundle, "tokenizer.json"))
    tok.enable_truncation(cfg["max_position_embeddings"])
    teacher = E5(weights, cfg)
    for p in teacher.parameters():
        p.requires_grad_(False)

    pairs = {}
    for lang in LANGS:
        rows = [json.loads(l) for l in open(os.path.join(a.data, f"translations.{lang}-en.jsonl"), encoding="utf-8")]
        pairs[lang] = [r for r in rows if r["en"].strip() and r["native"].strip()]
    # Passages: the English side of pairs 0..2600 of every language, encoded once.
    passages, row_of = [], {}
    for lang in LANGS:
        for i, r in enumerate(pairs[lang][:MAX_TRAIN + TEST + TUNE]):
            row_of[(lang, i)] = len(passages)
            passages.append(r["en"])
    pv = encode(teacher, tok, passages, "passage: ")
    print(f"[student] {len(passages)} passages encoded ({time.time() - start:.0f} s)", flush=True)

    def split(lo, hi):
        qs = {l: [pairs[l][i]["native"] for i in range(lo, hi)] for l in LANGS}
        want = {l: [row_of[(l, i)] for i in range(lo, hi)] for l in LANGS}
        pools = {l: [row_of[(l, i)] for i in list(range(MAX_TRAIN)) + list(range(lo, hi))] for l in LANGS}
        return qs, want, pools

    test, tune = split(MAX_TRAIN, MAX_TRAIN + TEST), split(MAX_TRAIN + TEST, MAX_TRAIN + TEST + TUNE)

    def embed(model, s):
        return {l: encode(model, tok, s[0][l], "query: ") for l in LANGS}

    def evaluate(model, s):
        return metrics(embed(model, s), pv, s[1], s[2])

    def avg(m):
        return float(np.mean([v[0] for v in m.values()])), float(np.mean([v[1] for v in m.values()]))

    plain = {"tune": embed(teacher, tune), "test": embed(teacher, test)}
    base_tune = metrics(plain["tune"], pv, tune[1], tune[2])
    base_test = metrics(plain["test"], pv, test[1], test[2])
    print(f"[student] identity: tune R@1 {avg(base_tune)[0]:.4f}, test R@1 {avg(base_test)[0]:.4f}", flush=True)

    # Training pairs: (native, English) and (English, English), targets from the teacher.
    src, tgt = [], []
    for lang in LANGS:
        for r in pairs[lang][:a.train]:
            src += [r["native"], r["en"]]
            tgt += [r["en"], r["en"]]
    targets = torch.from_numpy(encode(teacher, tok, tgt, "query: "))
    # The linear adapter on the same embeddings, for comparison: the closed-form fit of
    # xqdb's embedding objective, λ picked on the tune split.
    q_native = encode(teacher, tok, src[0::2], "query: ")
    t_native = targets.numpy()[0::2]
    adapter = None
    for lam in [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]:
        g = q_native.T @ q_native + lam * np.eye(q_native.shape[1])
        w = np.eye(q_native.shape[1]) + np.linalg.solve(g, q_native.T @ (t_native - q_native)).T

        def mapped(name, s, w=w):
            out = {}
            for l in LANGS:
                v = plain[name][l] @ w.T
                out[l] = v / np.linalg.norm(v, axis=1, keepdims=True)
            return metrics(out, pv, s[1], s[2])

        r1 = avg(mapped("tune", tune))[0]
        if adapter is None or r1 > adapter[0]:
            adapter = (r1, lam, w, mapped)
    adapter_test = adapter[3]("test", test, adapter[2])
    print(f"[student] adapter (λ {adapter[1]}): tune R@1 {adapter[0]:.4f}, test R@1 {avg(adapter_test)[0]:.4f}", flush=True)
    student = E5(weights, cfg)
    for name, p in student.w.items():
        p.requires_grad_(not name.startswith("emb_word"))
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    best = (avg(base_tune)[0], 0, {k: v.detach().clone() for k, v in student.w.items()})
    curve = []
    train_seconds = 0.0
    for epoch in range(1, a.epochs + 1):
        t0 = time.time()
        student.train()
        order = rng.permutation(len(src))
        total = 0.0
        for b in range(0, len(order), a.batch):
            idx = order[b:b + a.batch]
            ids, mask = next(batches(tok, [src[i] for i in idx], "query: ", len(idx)))
            out = student(ids, mask)
            loss = ((out - targets[idx]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_seconds += time.time() - t0
        m = evaluate(student, tune)
        curve.append({"epoch": epoch, "loss": total / len(src), "tune_r1": avg(m)[0], "seconds": time.time() - t0})
        print(f"[student] epoch {epoch}: loss {total / len(src):.5f}, tune R@1 {avg(m)[0]:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if avg(m)[0] > best[0]:
            best = (avg(m)[0], epoch, {k: v.detach().clone() for k, v in student.w.items()})
    with torch.no_grad():
        for k, v in best[2].items():
            student.w[k].copy_(v)
    final = evaluate(student, test) if best[1] > 0 else base_test
    print(f"\n{a.train} training pairs per language; kept epoch {best[1]}; "
          f"{train_seconds / 60:.1f} min of training on {a.threads} threads\n")
    print("| lang | R@1 | R@1 adapter | R@1 student | MRR@10 | MRR@10 adapter | MRR@10 student |")
    print("|---|---|---|---|---|---|---|")
    rows = [(l, base_test[l], adapter_test[l], final[l]) for l in LANGS]
    rows.append(("**average**", avg(base_test), avg(adapter_test), avg(final)))
    for l, b, d, f in rows:
        print(f"| {l} | {b[0]:.4f} | {d[0]:.4f} | {f[0]:.4f} | {b[1]:.4f} | {d[1]:.4f} | {f[1]:.4f} |")
    if a.json:
        json.dump({"train": a.train, "kept_epoch": best[1], "curve": curve, "train_seconds": train_seconds,
                   "identity": base_test, "adapter": adapter_test,
                   "adapter_lambda": adapter[1], "student": final}, open(a.json, "w"), indent=1)
    if a.out and best[1] > 0:
        os.makedirs(a.out, exist_ok=True)
        for f in os.listdir(a.bundle):
            if f != "model.onnx":
                shutil.copy(os.path.join(a.bundle, f), os.path.join(a.out, f))
        trained = {k: student.p(k).detach().numpy() for k in weights}
        for init in graph.graph.initializer:
            if init.name in trained:
                init.CopyFrom(numpy_helper.from_array(trained[init.name], init.name))
        onnx.save(graph, os.path.join(a.out, "model.onnx"))
        manifest_path = os.path.join(a.out, "xqdb-bundle.json")
        manifest = json.load(open(manifest_path))
        blob = open(os.path.join(a.out, "model.onnx"), "rb").read()
        manifest["files"]["model.onnx"] = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        manifest["name"] += "-query-student"
        manifest["source"] += f"; query side distilled by scripts/distill_encoder.py ({a.train} pairs per language)"
        json.dump(manifest, open(manifest_path, "w"), indent=2)
        print(f"[student] wrote {a.out} (query side only: passages stay encoded by {a.bundle})")


if __name__ == "__main__":
    main()
