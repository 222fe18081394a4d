#!/usr/bin/env python3
"""Scores the BM25 parity fixture with bm25s (method "lucene", k1 1.2, b 0.75), an
implementation independent of xqdb's, on the terms xqdb's analyzer produced:

  cargo run --example bm25_tokens > target/bm25-tokens.json
  python -m venv v && v/bin/pip install bm25s==0.3.16 numpy scipy
  v/bin/python scripts/make_bm25_fixture.py target/bm25-tokens.json tests/fixtures/bm25.json

The output holds the texts, their terms and, per query, the score of every document;
`tests/lexical.rs` re-analyses the texts and re-scores them."""
import json
import sys

import bm25s
import numpy as np

src, out = sys.argv[1], sys.argv[2]
data = json.load(open(src, encoding="utf-8"))
corpus = [d["terms"] for d in data["docs"]]
retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
retriever.index(corpus, show_progress=False)
for q in data["queries"]:
    q["scores"] = [float(x) for x in retriever.get_scores(q["terms"])]
data["reference"] = f"bm25s {bm25s.__version__}, method lucene, k1 1.2, b 0.75"
json.dump(data, open(out, "w", encoding="utf-8"), ensure_ascii=False, indent=1)
print(f"{len(corpus)} documents, {len(data['queries'])} queries -> {out}")
