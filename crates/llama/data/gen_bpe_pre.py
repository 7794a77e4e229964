"""Extracts the BPE pre-tokenizer table of llama.cpp's convert_hf_to_gguf.py
(the check text, and each sha256 of its token ids with the
`tokenizer.ggml.pre` name it stands for) into bpe_pre.json.

    python gen_bpe_pre.py LLAMA_CPP_DIR > bpe_pre.json

bpe_pre.json was made from the llama.cpp vendored in llama-cpp-python
0.3.36 (PyPI source package); rerun when that version moves.
"""
import ast
import json
import sys
from pathlib import Path

src = (Path(sys.argv[1]) / "conversion" / "base.py").read_text(encoding="utf-8")
tree = ast.parse(src)
fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "get_vocab_base_pre")
chktxt = None
table = []
for node in ast.walk(fn):
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "chktxt":
        chktxt = ast.literal_eval(node.value)
    if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
        left, comp = node.test.left, node.test.comparators[0]
        if getattr(left, "id", None) == "chkhsh" and isinstance(comp, ast.Constant):
            res = next(s.value.value for s in node.body if isinstance(s, ast.Assign) and s.targets[0].id == "res")
            table.append([comp.value, res])
json.dump({"source": "llama-cpp-python 0.3.36: vendor/llama.cpp/conversion/base.py get_vocab_base_pre",
           "chktxt": chktxt, "hashes": table}, sys.stdout, ensure_ascii=True, indent=0)
print()
