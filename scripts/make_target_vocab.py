#!/usr/bin/env python3
"""Builds a generator's target vocabulary: the pieces its queries can use.

    python scripts/make_target_vocab.py GENERATOR_DIR [--languages ar,bn,fi,ja,ko,ru,te]
        [--data ../shared/data] [--out GENERATOR_DIR/target_vocab.json] [--with-english]

Runs in the set-up venv (`tokenizers` only). The kept pieces are
  - every piece of the real text of the profile's languages in ../shared/data, except the
    held-out questions: the XOR-TyDi train questions, the native sides of the translation
    files and the gettext UI strings of those languages (with --with-english, which is the
    default, the English sides too: questions in any language carry Latin-script names);
  - the tokenizer's special tokens (pad, EOS, unknown ...);
  - every piece made only of digits, punctuation, symbols and the word-boundary mark;
  - every single-character piece of the scripts the kept text uses, so that a rare name can
    still be spelled out.
Coverage is measured on the XOR-TyDi dev questions (never used to build the set): per language,
the share of their pieces inside the set. The file format is described in format/FORMAT.md
("Generator folders"). The ids are sorted, so that ties between logits keep their order.
"""

import argparse
import json
import sys
import unicodedata
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
PAPER_LANGUAGES = "ar,bn,fi,ja,ko,ru,te"
FORMAT_VERSION = 1


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def build_texts(data: Path, langs, english: bool):
    texts = []
    for r in read_jsonl(data / "xor-tydi" / "xor_train_retrieve_eng_span.jsonl"):
        if r["lang"] in langs:
            texts.append(r["question"])
    for lang in langs:
        path = data / "xor-tydi" / f"translations.{lang}-en.jsonl"
        if path.exists():
            for r in read_jsonl(path):
                texts.append(r["native"])
                if english:
                    texts.append(r["en"])
    for r in read_jsonl(data / "gettext" / "ui_strings.all7.jsonl"):
        for lang in langs:
            if lang in r:
                texts.append(r[lang])
        if english:
            texts.append(r["en"])
    return texts


def held_out(data: Path, langs):
    out = {lang: [] for lang in langs}
    for r in read_jsonl(data / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl"):
        if r["lang"] in out:
            out[r["lang"]].append(r["question"])
    return out


def is_symbolic(piece: str) -> bool:
    body = piece.replace("\u2581", "")
    return all(unicodedata.category(ch)[0] in "NPSZ" for ch in body)


def script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("generator", type=Path)
    ap.add_argument("--languages", default=PAPER_LANGUAGES)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-english", action="store_true", help="leave the English sides out")
    ap.add_argument("--vocab-size", type=int, help="logits width (default: config.json)")
    args = ap.parse_args()
    langs = [l.strip() for l in args.languages.split(",") if l.strip()]
    tok = Tokenizer.from_file(str(args.generator / "tokenizer.json"))
    vocab_size = args.vocab_size
    if vocab_size is None:
        cfg = json.loads((args.generator / "config.json").read_text(encoding="utf-8"))
        vocab_size = int(cfg["vocab_size"])
    pieces = tok.get_vocab(with_added_tokens=True)
    keep = set()
    texts = build_texts(args.data, langs, not args.no_english)
    scripts = set()
    for enc in tok.encode_batch(texts, add_special_tokens=True):
        keep.update(enc.ids)
    for t in texts:
        scripts.update(script_of(ch) for ch in t if not ch.isspace())
    from_text = len(keep)
    specials = {i for p, i in pieces.items() if p.startswith("<") and p.endswith(">")}
    for p, i in pieces.items():
        if i in specials or is_symbolic(p):
            keep.add(i)
        body = p.replace("\u2581", "")
        if len(body) == 1 and script_of(body) in scripts:
            keep.add(i)
    keep = sorted(i for i in keep if 0 <= i < vocab_size)
    kept = set(keep)
    coverage = {}
    for lang, qs in held_out(args.data, langs).items():
        total = inside = 0
        for enc in tok.encode_batch(qs, add_special_tokens=True):
            total += len(enc.ids)
            inside += sum(1 for i in enc.ids if i in kept)
        coverage[lang] = {
            "questions": len(qs),
            "pieces": total,
            "share_inside": round(inside / total, 6) if total else None,
        }
    doc = {
        "format": "xqdb-target-vocab",
        "version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "languages": langs,
        "built_from": f"{len(texts)} texts of ../shared/data (XOR-TyDi train questions, "
        "translation files, gettext UI strings)",
        "coverage_held_out": coverage,
        "ids": keep,
    }
    out = args.out or args.generator / "target_vocab.json"
    out.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
    shares = ", ".join(f"{l} {c['share_inside']:.4f}" for l, c in coverage.items())
    print(
        f"{out}: {len(keep)} of {vocab_size} pieces ({from_text} from {len(texts)} texts); "
        f"held-out coverage {shares}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
