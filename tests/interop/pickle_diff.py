"""Differential test of `modelconv scan` against CPython's own unpickler.

For every pickle of a generated corpus (random opcode streams, plus one
family per known parser differential), CPython's C unpickler runs it with a
`find_class` that records the global instead of importing it (and returns
a harmless stand-in that accepts any call, BUILD, append or setitem). Every
global CPython reaches must be among those `scan --json` reports for the
file, and such a file is never "safe".

Usage (standalone): python3 pickle_diff.py MODELCONV [N_RANDOM] [SEED]
"""
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile


class Stand:
    """What a recorded global becomes: callable, buildable, a container."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Stand()

    def __setstate__(self, state):
        pass

    def append(self, x):
        pass

    def extend(self, x):
        pass

    def add(self, x):
        pass

    def __setitem__(self, k, v):
        pass


class Recorder(pickle.Unpickler):
    def __init__(self, f, **kw):
        super().__init__(f, **kw)
        self.seen = []

    def find_class(self, module, name):
        self.seen.append((module, name))
        return Stand

    def persistent_load(self, pid):
        return Stand()


def cpython_globals(data):
    """The globals CPython's unpickler reaches in `data` (until STOP or an error)."""
    r = Recorder(io.BytesIO(data), encoding="utf-8")
    try:
        r.load()
    except BaseException:  # noqa: BLE001 - any failure ends the stream; what was reached counts
        pass
    return r.seen


def s(text):
    """A BINUNICODE string."""
    b = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


PAYLOAD_TAIL = b"(S'id'\ntR."

FAMILIES = {
    # Text-protocol ints CPython parses and a strict parser does not.
    "int_hex": b"I0x10\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "int_underscore": b"I1_000\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "int_octal": b"I010\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "int_long": b"I" + b"9" * 400 + b"\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "int_nul": b"I12\x00\xff\xfe\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "int_space": b"I  -7 \n0cos\nsystem\n" + PAYLOAD_TAIL,
    "long_prefix": b"L0o17L\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "float_forms": b"F1.e5\n0F-Infinity\n0F1e5\x00zz\n0cos\nsystem\n" + PAYLOAD_TAIL,
    "put_get_underscore": b"N p1_0\n0g1_0\n0cos\nsystem\n".replace(b" ", b"") + PAYLOAD_TAIL,
    # Names spelled with escapes, assembled by STACK_GLOBAL.
    "string_escapes": b"\x80\x04S'o\\x73'\nS'sys\\164em'\n\x93(S'id'\ntR.",
    "string_dq": b'\x80\x04S"os"\nS"system"\n\x93(S\'id\'\ntR.',
    "unicode_escape": b"\x80\x04Vo\\u0073\nVsyst\\u0065m\n\x93(Vid\ntR.",
    "unicode_latin1": b"\x80\x04V\xe9\nVx\n0\x8c\x02os\x8c\x06system\x93(Vid\ntR.",
    "unicode_surrogate": b"\x80\x04V\\ud800\n0\x8c\x02os\x8c\x06system\x93(Vid\ntR.",
    "binstring_name": b"\x80\x02U\x02osU\x06system\x93(U\x02idtR.",
    # A deep stack before the payload (beyond a small scanner's limits).
    "deep_marks": b"(" * 70000 + b"cos\nsystem\n" + PAYLOAD_TAIL,
    "many_items": b"(" + b"N" * 300000 + b"0" * 300000 + b"cos\nsystem\n" + PAYLOAD_TAIL,
    # Memo tricks.
    "memo_names": b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93(Vid\ntR.",
    "protocol_4_dotted": b"\x80\x04\x8c\x08builtins\x8c\x0fgetattr.__self__\x93.",
    "proto5_frame": b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n" + PAYLOAD_TAIL,
    "inst": b"(S'id'\nios\nsystem\n.",
    "obj": b"(cos\nsystem\nS'id'\no.",
    "newobj": b"\x80\x02cos\nsystem\n(S'id'\nt\x81.",
    "reduce_after_build": b"\x80\x02cbuiltins\ndict\n)R}b" + b"cos\nsystem\n" + PAYLOAD_TAIL,
    "append_to_object": b"\x80\x02cbuiltins\nobject\n)RNa" + b"cos\nsystem\n" + PAYLOAD_TAIL,
    "setitem_on_call": b"\x80\x02cfoo\nbar\n)RNNs" + b"cos\nsystem\n" + PAYLOAD_TAIL,
}

MODULES = [("os", "system"), ("builtins", "eval"), ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
           ("foo", "bar"), ("subprocess", "Popen"), ("builtins", "getattr"), ("numpy", "dtype")]


def random_stream(rng):
    """A random opcode stream: plausible arguments, globals sprinkled in."""
    out = bytearray()
    if rng.random() < 0.7:
        out += bytes([0x80, rng.choice([0, 1, 2, 3, 4, 5])])
    memo = 0
    for _ in range(rng.randint(1, 40)):
        k = rng.random()
        if k < 0.12:
            m, n = rng.choice(MODULES)
            out += f"c{m}\n{n}\n".encode()
        elif k < 0.22:
            m, n = rng.choice(MODULES)
            out += s(m) + s(n) + b"\x93"
        elif k < 0.30:
            out += rng.choice([b"I" + rng.choice([b"1", b"0x1f", b"1_0", b"010", b" 3", b"99999999999999999999", b"00", b"01", b"1__0"]) + b"\n",
                               b"L" + rng.choice([b"5L", b"0x5", b"1_0L", b"007"]) + b"\n",
                               b"F" + rng.choice([b"1.5", b"inf", b"1e", b".5", b"1e999"]) + b"\n",
                               b"S" + rng.choice([b"'a'", b"'\\x41'", b"\"q\"", b"'bad", b"'\\x4'"]) + b"\n",
                               b"V" + rng.choice([b"a\\u0041", b"\\ud800", b"\\u12", b"x"]) + b"\n",
                               b"K" + bytes([rng.randrange(256)]), b"J" + struct.pack("<i", rng.randrange(-9, 9))])
        elif k < 0.45:
            out += rng.choice([b"(", b")", b"]", b"}", b"N", b"t", b"l", b"d", b"\x85", b"\x86", b"\x87", b"0", b"1", b"2",
                               b"a", b"e", b"s", b"u", b"R", b"b", b"\x81", b"o", b"\x88", b"\x89", b"\x8f", b"\x90", b"\x91"])
        elif k < 0.55:
            out += b"\x94"
            memo += 1
        elif k < 0.62 and memo:
            out += b"h" + bytes([rng.randrange(memo)])
        elif k < 0.66:
            out += b"q" + bytes([rng.randrange(4)])
        elif k < 0.70:
            out += b"\x95" + struct.pack("<Q", rng.randrange(0, 64))
        elif k < 0.74:
            out += s(rng.choice(["os", "system", "eval", "builtins", "x"]))
        elif k < 0.76:
            out += bytes([rng.randrange(256)])
        else:
            out += b"N"
    out += b"."
    return bytes(out)


def corpus(n_random, seed):
    rng = random.Random(seed)
    items = list(FAMILIES.items())
    items += [(f"random_{i:05d}", random_stream(rng)) for i in range(n_random)]
    return items


def run(modelconv, n_random=3000, seed=1, work=None):
    """Returns the failures (empty when scan sees every global) and how many
    pickles reached a global. Files are written under `work` (a new temp
    folder if None)."""
    work = work or tempfile.mkdtemp(prefix="modelconv-pickle-diff-")
    os.makedirs(work, exist_ok=True)
    expected = {}
    for name, data in corpus(n_random, seed):
        seen = cpython_globals(data)
        if not seen:
            continue
        path = os.path.join(work, name + ".pkl")
        with open(path, "wb") as f:
            f.write(data)
        expected[path] = seen
    p = subprocess.run([modelconv, "scan", "--json", work], capture_output=True, text=True)
    assert p.returncode in (0, 1), p.stderr
    report = {f["path"]: f for f in json.loads(p.stdout)["files"]}
    failures = []
    for path, seen in sorted(expected.items()):
        f = report.get(path)
        ours = set()
        for st in (f or {}).get("streams", []):
            ours |= {(g["module"], g["name"]) for g in st["globals"]}
        missing = [g for g in seen if g not in ours]
        verdict = (f or {}).get("verdict", "missing")
        if missing or verdict == "safe" and any(g not in SAFE for g in seen):
            failures.append(f"{os.path.basename(path)}: CPython reached {seen}; scan: {verdict}, missing {missing}")
    return failures, len(expected)


# What scan may call safe even when CPython reaches it (the loader's allowlist).
SAFE = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("numpy", "dtype")}

if __name__ == "__main__":
    fails, n = run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    for f in fails[:50]:
        print(f)
    print(f"{n} pickles that reach a global; {len(fails)} disagree")
