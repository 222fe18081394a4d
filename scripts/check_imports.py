#!/usr/bin/env python3
"""The library's import order (ARCHITECTURE.md, "Import order"), checked.

Every top-level module of `src/` sits on a layer; a module may name (`use crate::…`,
`crate::…::…`) only modules on lower layers. Names re-exported at the crate root
(`crate::Index`) count as the module that defines them (read from `src/lib.rs`).
Comments and the `#[cfg(test)] mod tests` block at the end of a file are not checked:
a unit test may build fixtures with anything.

    python3 scripts/check_imports.py [SRC]   # exits 1 and lists each import against the order
    python3 scripts/check_imports.py --self-test
"""

import os
import re
import sys
import tempfile

# Lowest first. A module not listed here is an error (place it before adding it).
LAYERS = [
    ["error"],
    ["types"],
    ["scan"],
    ["segment"],
    ["faults", "model", "xqg", "adapter"],
    ["store"],
    ["lexical"],
    ["ingest"],
    ["index"],
    ["distill", "documents", "eval"],
    ["server", "interchange"],
    ["fuzzing"],
]
LAYER = {m: i for i, group in enumerate(LAYERS) for m in group}


def module_of(src, path):
    rel = os.path.relpath(path, src).split(os.sep)
    return rel[0][:-3] if rel[0].endswith(".rs") else rel[0]


def strip(text):
    """The file without comments and without its trailing unit-test module."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod tests\b", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"(^|\s)//.*$", "", line) for line in text.split("\n"))


def group_heads(body):
    """First path segment of each item in a `{...}` use group (nested groups skipped)."""
    heads, depth, item = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            word = re.match(r"\s*(\w+)", item)
            if word:
                heads.append(word.group(1))
            item = ""
            continue
        if depth == 0:
            item += ch
    return heads


def root_names(src):
    """Crate-root names re-exported by `lib.rs`, mapped to the module that defines them."""
    text = strip(open(os.path.join(src, "lib.rs"), encoding="utf-8").read())
    names = {}
    for m in re.finditer(r"pub use (\w+)::(\{[^;]*\}|\w+);", text, re.S):
        module, items = m.group(1), m.group(2)
        for name in re.findall(r"\w+", items):
            names[name] = module
    return names


def references(text):
    """(line, first segment after `crate::`) for every crate path in `text`."""
    out = []
    for m in re.finditer(r"\bcrate::(\{)?", text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            out += [(line, head) for head in group_heads(text[m.end() : i - 1])]
        else:
            word = re.match(r"\w+", text[m.end() :])
            if word:
                out.append((line, word.group(0)))
    return out


def check(src):
    names = root_names(src)
    problems = []
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            if not f.endswith(".rs") or path == os.path.join(src, "lib.rs"):
                continue
            module = module_of(src, path)
            if module == "bin":
                continue
            if module not in LAYER:
                problems.append(f"{path}: module `{module}` has no layer in scripts/check_imports.py")
                continue
            text = strip(open(path, encoding="utf-8").read())
            for line, head in references(text):
                target = names.get(head, head)
                if target == module or target in ("self", "super"):
                    continue
                if target not in LAYER:
                    problems.append(f"{path}:{line}: `crate::{head}` is not a known module")
                elif LAYER[target] >= LAYER[module]:
                    problems.append(
                        f"{path}:{line}: `{module}` (layer {LAYER[module]}) imports "
                        f"`{target}` (layer {LAYER[target]}); only lower layers may be imported"
                    )
    return problems


def self_test():
    """The checker passes a tree in order and fails one with a reversed import."""
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "index"))
        files = {
            "lib.rs": "mod index;\nmod types;\npub use index::{Index, Snapshot};\n",
            "types.rs": "use crate::error::Error;\n// crate::index is only named here\n",
            "index/mod.rs": "use crate::types::Passage;\nuse crate::{error::Error, types};\n",
            "error.rs": "",
        }
        for name, text in files.items():
            open(os.path.join(d, name), "w").write(text)
        assert check(d) == [], check(d)
        for reversed_use in [
            "use crate::index::Writer;\n",
            "use crate::Index;\n",
            "use crate::{error::Error, index::{Index, Snapshot}};\n",
            "fn f() -> crate::Snapshot { todo!() }\n",
        ]:
            open(os.path.join(d, "types.rs"), "w").write(reversed_use)
            problems = check(d)
            assert len(problems) == 1 and "imports `index`" in problems[0], (reversed_use, problems)
        open(os.path.join(d, "types.rs"), "w").write(
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::index::Index;\n}\n"
        )
        assert check(d) == [], check(d)
    print("check_imports self-test: ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    found = check(os.path.normpath(src))
    for p in found:
        print(p)
    if found:
        print(f"{len(found)} import(s) against the order in ARCHITECTURE.md")
        sys.exit(1)
    print("import order: ok")
