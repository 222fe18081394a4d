#!/usr/bin/env python3
"""Makes the tiny seq2seq test models under tests/fixtures/seq2seq/ and their reference outputs.

Run once by hand (never in CI); the outputs are committed. It needs a venv with
torch, transformers==4.57.6 and optimum-onnx[onnxruntime]==0.1.0 (see tests/fixtures/seq2seq/README.md).

    python scripts/make_seq2seq_fixtures.py [--tokenizer-only] [--big OUT]

What it makes:
  tokenizer.json     a Unigram tokenizer (vocab 1000; pad 0, eos 1, unk 2) trained on ../shared/data
                     (generated once and kept: training is not byte-reproducible)
  t5/, mt5/          randomly initialised T5 (tied embeddings) and mT5 (gated GELU, untied head)
                     models, exported with optimum in both ONNX layouts (split decoders and the
                     merged decoder), plus config.json and tokenizer.json
  reference.json     per model: greedy token ids from model.generate for several prompts, the
                     first-step logits, and teacher-forced log-likelihoods of given targets

--big OUT makes an mT5-base-sized random model (582 M parameters, ~4 GB of ONNX files) for the
generation benchmark; it is not committed. With --tokenizer T it uses T (a real 250k-piece
multilingual tokenizer such as the default encoder's, so that prompts and target vocabularies
have real lengths and sizes) with ids pad 1, EOS 2 (as in that tokenizer) instead of the tiny one.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "seq2seq"
DATA = ROOT.parent / "shared" / "data"

PROMPTS = [
    "Generate a Telugu question for this passage: Helsinki Helsinki is the capital of Finland.",
    "Generate a Japanese question for this passage: The translation domain used by gettext",
    "Generate an Arabic question for this passage: مجال الترجمة المستعمل من طرف gettext",
    "Generate a Russian question for this passage: Область перевода, используемая gettext",
    "Generate a Korean question for this passage: gettext가 사용하는 번역 도메인",
    "x",
]
TARGETS = [
    ("Generate a Finnish question for this passage: Tokyo is big.", "Mikä on Japanin pääkaupunki?"),
    ("Generate a Bengali question for this passage: Paris", "প্যারিস কোথায়?"),
    ("Generate a Japanese question for this passage: The sun", "太陽は何ですか"),
]


def corpus_lines():
    lines = []
    with open(DATA / "gettext" / "ui_strings.all7.jsonl", encoding="utf-8") as f:
        for row in f:
            lines.extend(json.loads(row).values())
    for path in sorted((DATA / "xor-tydi").glob("translations.*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for i, row in enumerate(f):
                if i >= 300:
                    break
                r = json.loads(row)
                lines.extend([r["native"], r["en"]])
    lines.extend(PROMPTS)
    return lines


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    lines = corpus_lines()
    counts = Counter(ch for line in lines for ch in line)
    keep = {ch for ch, _ in counts.most_common(420)}
    filtered = ["".join(ch for ch in line if ch in keep) for line in lines]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(filtered, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1
    tok.save(str(path))


def hf_tokenizer(path: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )


def build(kind: str, big: bool = False, ids=(0, 1)):
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Config, T5ForConditionalGeneration

    torch.manual_seed(1234 if kind == "t5" else 5678)
    common = dict(
        vocab_size=250112 if big else 1000,
        d_model=768 if big else 64,
        d_kv=64 if big else 16,
        d_ff=2048 if big else 128,
        num_layers=12 if big else 2,
        num_decoder_layers=12 if big else 2,
        num_heads=12 if big else 4,
        pad_token_id=ids[0],
        eos_token_id=ids[1],
        decoder_start_token_id=ids[0],
    )
    if kind == "t5":
        model = T5ForConditionalGeneration(T5Config(**common, tie_word_embeddings=True))
        with torch.no_grad():
            # With tied embeddings and random weights T5 copies its input; shrink them.
            model.shared.weight.mul_(0.05)
    else:
        model = MT5ForConditionalGeneration(
            MT5Config(**common, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
        )
        if not big:
            with torch.no_grad():
                # Make EOS win sometimes, so that the fixtures test EOS stopping.
                model.lm_head.weight[1].mul_(6.0)
    model.eval()
    return model


def export(model, tok, workdir: Path, out: Path):
    src = workdir / "hf"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    subprocess.run(
        [
            sys.executable, "-m", "optimum.exporters.onnx", "--model", str(src),
            "--task", "text2text-generation-with-past", str(workdir / "onnx"),
        ],
        check=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    for name in [
        "encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx",
        "decoder_model_merged.onnx", "config.json", "tokenizer.json", "generation_config.json",
    ]:
        p = workdir / "onnx" / name
        if p.exists():
            shutil.copy(p, out / name)
    return sorted(os.listdir(out))


def references(model, tok):
    import torch

    out = {"greedy": [], "first_step_logits": [], "log_likelihood": []}
    for max_length in (8, 20):
        for p in PROMPTS:
            enc = tok(p, return_tensors="pt", truncation=True, max_length=64)
            with torch.no_grad():
                ids = model.generate(**enc, do_sample=False, max_length=max_length, num_beams=1)
            out["greedy"].append(
                {"prompt": p, "max_length": max_length, "max_input_tokens": 64,
                 "input_ids": enc["input_ids"][0].tolist(), "output_ids": ids[0].tolist()}
            )
    for p in PROMPTS[:3]:
        enc = tok(p, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc, decoder_input_ids=torch.tensor([[0]])).logits[0, 0]
        out["first_step_logits"].append({"prompt": p, "logits": [round(x, 6) for x in logits.tolist()]})
    for p, target in TARGETS:
        enc = tok(p, return_tensors="pt")
        labels = tok(target, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(**enc, labels=labels).logits[0]
        logp = torch.log_softmax(logits, dim=-1).gather(1, labels[0][:, None])[:, 0]
        out["log_likelihood"].append(
            {"prompt": p, "target": target, "target_ids": labels[0].tolist(),
             "sum": float(logp.sum()), "per_token": [float(x) for x in logp]}
        )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-only", action="store_true")
    ap.add_argument("--big", type=Path, help="write an mT5-base-sized random model here instead")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer.json for --big (default: the tiny one)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tok_path = OUT / "tokenizer.json"
    if not tok_path.exists():
        make_tokenizer(tok_path)
    if args.tokenizer_only:
        return
    tok = hf_tokenizer(args.tokenizer if args.big and args.tokenizer else tok_path)
    if args.big:
        ids = (tok.pad_token_id, tok.eos_token_id)
        model = build("mt5", big=True, ids=ids)
        with tempfile.TemporaryDirectory() as w:
            print(export(model, tok, Path(w), args.big))
        return
    refs = {}
    for kind in ("t5", "mt5"):
        model = build(kind)
        with tempfile.TemporaryDirectory() as w:
            print(kind, export(model, tok, Path(w), OUT / kind))
        refs[kind] = references(model, tok)
        ends = sum(1 for g in refs[kind]["greedy"] if g["output_ids"][-1] == 1)
        print(kind, "greedy sequences ending in EOS:", ends, "of", len(refs[kind]["greedy"]))
    with open(OUT / "reference.json", "w", encoding="utf-8") as f:
        json.dump(refs, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
