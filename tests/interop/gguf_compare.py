"""Compares two GGUF files with gguf-py: metadata keys (order, types,
values) and tensors (order, names, types, shapes, bytes). Prints every
difference; exits 1 when there is one.

    python gguf_compare.py OURS.gguf REFERENCE.gguf [--ignore-order]
"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType


def fields(r):
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        types = [t.name for t in f.types]
        if f.types and f.types[0] == GGUFValueType.ARRAY:
            val = [f.contents(i) for i in range(len(f.data))]
        else:
            val = f.contents()
        out[k] = (types, val)
    return out


def main():
    ours, ref = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
    ignore_order = "--ignore-order" in sys.argv
    diffs = []
    a, b = fields(ours), fields(ref)
    if not ignore_order and list(a) != list(b):
        diffs.append(f"metadata order differs:\n  ours {list(a)}\n  ref  {list(b)}")
    for k in sorted(set(a) | set(b)):
        if k not in a:
            diffs.append(f"missing key {k} = {str(b[k])[:200]}")
        elif k not in b:
            diffs.append(f"extra key {k} = {str(a[k])[:200]}")
        elif a[k] != b[k]:
            diffs.append(f"key {k}: ours {str(a[k])[:200]} ref {str(b[k])[:200]}")
    ta = {t.name: t for t in ours.tensors}
    tb = {t.name: t for t in ref.tensors}
    if not ignore_order and [t.name for t in ours.tensors] != [t.name for t in ref.tensors]:
        diffs.append("tensor order differs")
    for n in sorted(set(ta) | set(tb)):
        if n not in ta:
            diffs.append(f"missing tensor {n}")
        elif n not in tb:
            diffs.append(f"extra tensor {n}")
        else:
            x, y = ta[n], tb[n]
            if x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape):
                diffs.append(f"tensor {n}: ours {x.tensor_type.name}{list(x.shape)} ref {y.tensor_type.name}{list(y.shape)}")
            elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
                diffs.append(f"tensor {n}: bytes differ")
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s): {sys.argv[1]} vs {sys.argv[2]}")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
