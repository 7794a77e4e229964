"""Extracts ggml's IQ lookup tables into little-endian binary files.

usage: gen_tables.py LLAMA_CPP_SRC
Reads ggml/src/ggml-common.h (the dequantization grids and sign tables) and
ggml/src/ggml-quants.c (the compact grids the quantizers' init expands) of
llama.cpp 0c1e57098 (vendored in the llama-cpp-python 0.3.36 sdist) and
writes one NAME.bin per table here; tables.txt lists name, element type,
count and sha256. The numbers are data (ggml's codebooks), not code.
"""
import hashlib, os, re, struct, sys

src = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
common = open(os.path.join(src, "ggml/src/ggml-common.h")).read()
quants = open(os.path.join(src, "ggml/src/ggml-quants.c")).read()
FMT = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q"}


def numbers(body):
    return [int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", re.sub(r"//.*", "", body))]


def table(text, pattern, name):
    m = re.search(pattern, text, re.S)
    if not m:
        sys.exit(f"{name}: not found")
    return m.group(1), numbers(m.group(2))


out = []
for name in ["kmask_iq2xs", "ksigns_iq2xs", "iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq3xxs_grid", "iq3s_grid", "iq1s_grid"]:
    ty, vals = table(common, r"GGML_TABLE_BEGIN\((\w+), " + name + r", \w+\)(.*?)GGML_TABLE_END", name)
    out.append((name, ty, vals))
for name in ["kgrid_2bit_256", "kgrid_2bit_512", "kgrid_1bit_2048", "kgrid_2bit_1024", "kgrid_256", "kgrid_512"]:
    ty, vals = table(quants, r"static const (\w+) " + name + r"\[\w+\] = \{(.*?)\};", name)
    out.append((name, ty, vals))
lines = []
for name, ty, vals in out:
    data = struct.pack("<" + FMT[ty] * len(vals), *vals)
    open(os.path.join(here, name + ".bin"), "wb").write(data)
    lines.append(f"{name} {ty} {len(vals)} {hashlib.sha256(data).hexdigest()}")
open(os.path.join(here, "tables.txt"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
