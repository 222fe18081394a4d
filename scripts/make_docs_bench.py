#!/usr/bin/env python3
"""Derives the real-document cross-lingual benchmark in examples/docs-bench from two public
documentation sites that keep the same page in several languages:

- withastro/docs (MIT): src/content/docs/{en,ja,ko,ru,zh-cn,...}/PATH.mdx; the question is a
  translated page's front-matter `description`, the answer the English page at the same PATH.
- cncf/glossary (Apache-2.0): content/{en,bn,hi,ja,ko,ru,...}/TERM.md; the question is the first
  sentence of a translated entry, the answer the English entry.

A question is kept only when it differs from the English page's own text (untranslated pages
are left out). Questions are split by answer document (xxh-free: sha1 of the answer path), so
a document's questions are all tuning or all test: settings are chosen on `tune` only.

Usage: make_docs_bench.py ASTRO_GIT_DIR GLOSSARY_GIT_DIR [OUT]
(git directories of clones; files are read at HEAD with `git show`.)
"""
import hashlib
import json
import os
import re
import subprocess
import sys


PER_LANG = 5


def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True,
                          capture_output=True).stdout


def files(repo, root):
    out = git(repo, "ls-tree", "-r", "--name-only", "HEAD", root).decode()
    return [p for p in out.splitlines() if p]


def show(repo, path):
    return git(repo, "show", f"HEAD:{path}").decode("utf-8")


def front_matter(text):
    """Top-level scalar keys of a YAML front matter (plain, quoted and folded `>-` values)."""
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        return {}, text
    keys, lines, i = {}, m.group(1).split("\n"), 0
    while i < len(lines):
        km = re.match(r"^([A-Za-z_]+):\s*(.*)$", lines[i])
        i += 1
        if not km:
            continue
        key, value = km.group(1), km.group(2).strip()
        if value in (">", ">-", "|", "|-"):
            block = []
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                block.append(lines[i].strip())
                i += 1
            value = " ".join(b for b in block if b)
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        keys[key] = value
    return keys, text[m.end():]


def split_of(answer):
    return "tune" if hashlib.sha1(answer.encode()).digest()[0] % 2 == 0 else "test"


def first_sentence(body):
    for para in re.split(r"\n\s*\n", body):
        p = para.strip()
        if not p or p.startswith(("#", "import ", "<", "{", "|", "```", ">")):
            continue
        p = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", p)
        p = re.sub(r"[*_`]", "", " ".join(p.split()))
        m = re.match(r"(.+?[.!?。।؟])(\s|$)", p)
        return m.group(1) if m else p
    return None


def collect(name, repo, root, keep, question_of, out):
    """Writes the English pages of one source (`root`/en/REL where `keep(REL)`) under
    out/en/NAME/ and returns their number and the questions of its translated pages: each
    translation's `question_of(text)`, kept when at least 10 characters long and not the
    English page's own."""
    en = {p[len(root) + 4:]: p for p in files(repo, f"{root}/en") if keep(p[len(root) + 4:])}
    english = {}
    for rel, path in sorted(en.items()):
        text = show(repo, path)
        dest = os.path.join(out, "en", name, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)
        english[rel] = question_of(text)
    queries = []
    for path in files(repo, root):
        lang, rel = path[len(root) + 1:].split("/", 1)
        if lang == "en" or rel not in en:
            continue
        q = question_of(show(repo, path))
        if not q or len(q) < 10 or q == english[rel]:
            continue
        answer = f"{name}/{rel}"
        queries.append({"lang": lang, "query": q, "answer": answer,
                        "split": split_of(answer), "source": name})
    return len(en), queries


def main():
    astro, glossary = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else "examples/docs-bench"
    queries, docs = [], 0
    sources = (
        ("astro", astro, "src/content/docs", lambda rel: rel.endswith((".md", ".mdx")),
         lambda text: front_matter(text)[0].get("description", "").strip()),
        ("cncf", glossary, "content",
         lambda rel: rel.endswith(".md") and "/" not in rel and not rel.endswith("_index.md")
         and "TEMPLATE" not in rel,
         lambda text: first_sentence(front_matter(text)[1])),
    )
    for name, repo, root, keep, question_of in sources:
        n, qs = collect(name, repo, root, keep, question_of, out)
        docs += n
        queries += qs
    # Non-English pages for the language-tag check: up to PER_LANG pages of each source and
    # language (picked by hash of the path), under other/LANG/SOURCE/.
    picked = 0
    for name, repo, root, ext in (("astro", astro, "src/content/docs", (".md", ".mdx")),
                                  ("cncf", glossary, "content", (".md",))):
        by_lang = {}
        for path in files(repo, root):
            lang, rel = path[len(root) + 1:].split("/", 1)
            if lang != "en" and path.endswith(ext) and not rel.endswith("_index.md") \
                    and "TEMPLATE" not in rel:
                by_lang.setdefault(lang, []).append((hashlib.sha1(path.encode()).digest(), rel, path))
        for lang, pages in sorted(by_lang.items()):
            for _, rel, path in sorted(pages)[:PER_LANG]:
                dest = os.path.join(out, "other", lang, name, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(show(repo, path))
                picked += 1
    queries.sort(key=lambda q: (q["split"], q["lang"], q["answer"]))
    with open(os.path.join(out, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    for name, repo in (("astro", astro), ("cncf", glossary)):
        with open(os.path.join(out, f"LICENSE-{name}"), "wb") as f:
            f.write(git(repo, "show", "HEAD:LICENSE"))
    heads = {n: git(r, "rev-parse", "HEAD").decode().strip() for n, r in (("astro", astro), ("cncf", glossary))}
    by = {}
    for q in queries:
        by.setdefault((q["split"], q["lang"]), 0)
        by[(q["split"], q["lang"])] += 1
    print(json.dumps({"documents": docs, "other_language_pages": picked, "questions": len(queries), "heads": heads,
                      "by_split_lang": {f"{s}/{l}": n for (s, l), n in sorted(by.items())}}, indent=1))


if __name__ == "__main__":
    main()
