"""modelconv's outputs checked by the reference libraries, and their outputs
read by modelconv. Prints one line per check and a closing
'interop: N passed, M failed' line; exits 1 if anything failed."""
import json
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import torch
from gguf import GGUFReader, GGUFWriter, GGUFValueType, GGMLQuantizationType
from safetensors import safe_open
from safetensors.torch import save_file

MC = os.environ["MODELCONV"]
FIX = os.environ["FIXTURES"]
TMP = tempfile.mkdtemp(prefix="modelconv-interop-")
results = []


def check(fn):
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"ok      {fn.__name__}")
    except Exception:  # noqa: BLE001 - report every failure, keep going
        results.append((fn.__name__, traceback.format_exc()))
        print(f"FAILED  {fn.__name__}\n{traceback.format_exc()}")
    return fn


def mc(*args, code=0):
    p = subprocess.run([MC, *args], capture_output=True, text=True)
    assert p.returncode == code, f"modelconv {args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def inspect(path):
    return json.loads(mc("inspect", "--json", path))


def t(name):
    return os.path.join(TMP, name)


def raw(x):
    """The tensor's bytes (little-endian, contiguous), as numpy uint8."""
    x = x.contiguous().reshape(-1)
    return x.view(torch.uint8).numpy().tobytes() if x.numel() else b""


ST_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
            torch.int16: "I16", torch.int8: "I8", torch.uint64: "U64", torch.uint32: "U32", torch.uint16: "U16",
            torch.uint8: "U8", torch.bool: "BOOL"}
GGUF_OK = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8"}

g = torch.Generator().manual_seed(3)
REF = {}
for i, (dt, name) in enumerate(ST_NAMES.items()):
    if dt.is_floating_point:
        v = (torch.randn(3, 5, generator=g) * 10).to(dt)
    elif dt == torch.bool:
        v = torch.rand(3, 5, generator=g) > 0.5
    else:
        info = torch.iinfo(dt)
        lo, hi = max(info.min, -(2**31)), min(info.max, 2**31 - 1)
        v = torch.randint(lo, hi, (3, 5), generator=g, dtype=torch.int64).to(dt)
    REF[f"layer.{i}.{name.lower()}"] = v
REF["scalar"] = torch.tensor(-1.5)
REF["empty"] = torch.zeros(0, 3, dtype=torch.float16)
REF["nan_inf"] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45, 3.4e38])
REF_PATH = t("ref.safetensors")
save_file(REF, REF_PATH, metadata={"format": "pt", "k": "v"})


def read_st(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@check
def inspect_agrees_with_safetensors_on_files_it_wrote():
    ours = inspect(REF_PATH)
    with safe_open(REF_PATH, framework="pt") as f:
        theirs = {k: (ST_NAMES[f.get_tensor(k).dtype], list(f.get_tensor(k).shape)) for k in f.keys()}
        meta = f.metadata()
    assert {x["name"]: (x["dtype"], x["shape"]) for x in ours["tensors"]} == theirs
    assert ours["metadata"] == meta


@check
def safetensors_copy_reads_back_identically():
    out = t("copy.safetensors")
    mc("convert", REF_PATH, out)
    got, meta = read_st(out)
    assert meta == {"format": "pt", "k": "v"}
    assert got.keys() == REF.keys()
    for k, v in REF.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and raw(got[k]) == raw(v), k


@check
def gguf_output_reads_in_gguf_py_and_round_trips():
    g_out, back = t("rt.gguf"), t("rt.safetensors")
    mc("convert", REF_PATH, g_out, "--exclude", r"^layer\.\d+\.(u\d+|bool|f8_.*)$")
    r = GGUFReader(g_out)
    by_name = {x.name: x for x in r.tensors}
    kept = {k: v for k, v in REF.items() if ST_NAMES[v.dtype] in GGUF_OK}
    assert set(by_name) == set(kept), set(by_name) ^ set(kept)
    for k, v in kept.items():
        x = by_name[k]
        # gguf-py lists ne (innermost first); ours is outermost first.
        assert [int(d) for d in x.shape[::-1]] == list(v.shape) or (v.dim() == 0 and len(x.shape) == 0), (k, x.shape)
        assert x.tensor_type.name == ST_NAMES[v.dtype], (k, x.tensor_type)
        assert bytes(np.asarray(x.data).tobytes()) == raw(v), k
    assert str(bytes(r.fields["k"].parts[-1]), "utf-8") == "v"
    mc("convert", g_out, back)
    got, _ = read_st(back)
    for k, v in kept.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and raw(got[k]) == raw(v), k


@check
def casts_match_torch_bit_for_bit():
    for dtype, tdt in (("F16", torch.float16), ("BF16", torch.bfloat16), ("F32", torch.float32)):
        out = t(f"cast-{dtype}.safetensors")
        mc("convert", REF_PATH, out, "--dtype", dtype)
        got, _ = read_st(out)
        for k, v in REF.items():
            if not v.dtype.is_floating_point:
                assert got[k].dtype == v.dtype and raw(got[k]) == raw(v), k
                continue
            want = v.to(tdt)
            assert got[k].dtype == tdt, (k, got[k].dtype)
            nan = torch.isnan(want)
            assert torch.equal(torch.isnan(got[k]), nan), k
            # NaN payloads may differ; every other value must be bit-identical.
            assert raw(got[k][~nan]) == raw(want[~nan]), (dtype, k)


@check
def sharded_output_loads_like_hugging_face_shards():
    d = t("shards")
    os.makedirs(d)
    mc("convert", REF_PATH, os.path.join(d, "model.safetensors"), "--max-shard-size", "200B")
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in REF.values())
    assert set(index["weight_map"]) == set(REF)
    for k, v in REF.items():
        with safe_open(os.path.join(d, index["weight_map"][k]), framework="pt") as f:
            assert raw(f.get_tensor(k)) == raw(v), k
    assert len(set(index["weight_map"].values())) > 2


def gguf_py_file():
    path = t("gguf_py.gguf")
    w = GGUFWriter(path, arch="test")
    w.add_uint8("a.u8", 7)
    w.add_int8("a.i8", -7)
    w.add_uint16("a.u16", 65535)
    w.add_int16("a.i16", -32768)
    w.add_uint32("a.u32", 2**32 - 1)
    w.add_int32("a.i32", -(2**31))
    w.add_float32("a.f32", 1.5)
    w.add_bool("a.bool", False)
    w.add_string("a.str", "ü ∑ 🙂")
    w.add_uint64("a.u64", 2**64 - 1)
    w.add_int64("a.i64", -(2**63))
    w.add_float64("a.f64", -0.25)
    w.add_array("a.tokens", [f"tok{i}" for i in range(1000)])
    w.add_array("a.scores", [float(i) / 4 for i in range(10)])
    w.add_array("a.nested", [[1, 2, 3], [4]])
    rng = np.random.default_rng(5)
    w.add_tensor("w32", rng.standard_normal((4, 64), dtype=np.float32))
    w.add_tensor("w16", rng.standard_normal((2, 3, 32)).astype(np.float16))
    w.add_tensor("w64", rng.standard_normal(7))
    w.add_tensor("idx", np.arange(10, dtype=np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def field_value(f):
    """A gguf-py ReaderField as a plain Python value."""
    from gguf import GGUFValueType as VT
    if f.types[0] == VT.ARRAY:
        sub = f.types[1] if len(f.types) > 1 else None
        if sub == VT.STRING:
            return [str(bytes(f.parts[i]), "utf-8") for i in f.data]
        if sub == VT.ARRAY:
            return None  # nested arrays: gguf-py gives no convenient view
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == VT.STRING:
        return str(bytes(f.parts[-1]), "utf-8")
    return f.parts[-1].tolist()[0]


@check
def reader_agrees_with_gguf_py_on_files_it_wrote():
    path = gguf_py_file()
    ours = inspect(path)
    r = GGUFReader(path)
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        want = field_value(f)
        if want is None:
            continue
        got = ours["metadata"][key]
        if isinstance(want, float) or (isinstance(want, list) and want and isinstance(want[0], float)):
            assert np.allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)), key
        else:
            assert got == want, (key, got, want)
    assert ours["metadata"]["a.nested"] == [[1, 2, 3], [4]]
    tens = {x["name"]: x for x in ours["tensors"]}
    for x in r.tensors:
        o = tens[x.name]
        assert o["shape"] == [int(d) for d in x.shape[::-1]], x.name
        assert o["dtype"] == x.tensor_type.name and o["offset"] == x.data_offset and o["bytes"] == x.n_bytes, x.name
    # A copy through modelconv is byte-identical to gguf-py's file, and
    # to safetensors and back keeps every tensor's bytes.
    out, st = t("gguf_py_copy.gguf"), t("gguf_py.safetensors")
    mc("convert", path, out)
    assert open(path, "rb").read() == open(out, "rb").read()
    mc("convert", path, st)
    got, _ = read_st(st)
    for x in r.tensors:
        assert raw(got[x.name]) == bytes(np.asarray(x.data).tobytes()), x.name


@check
def inspect_agrees_with_gguf_py_on_llama_cpp_k_quants():
    names = sorted(f for f in os.listdir(os.path.join(FIX, "gguf")) if f.endswith(".gguf"))
    assert len(names) >= 10
    for n in names:
        path = os.path.join(FIX, "gguf", n)
        ours = inspect(path)
        r = GGUFReader(path)
        theirs = [(x.name, x.tensor_type.name, [int(d) for d in x.shape[::-1]], int(x.data_offset), int(x.n_bytes)) for x in r.tensors]
        mine = [(x["name"], x["dtype"], x["shape"], x["offset"], x["bytes"]) for x in ours["tensors"]]
        assert mine == theirs, n
        assert ours["parameters"] == sum(int(x.n_elements) for x in r.tensors), n


@check
def dequantization_agrees_with_gguf_py():
    from gguf.quants import dequantize
    for n in sorted(f for f in os.listdir(os.path.join(FIX, "gguf")) if f.startswith(("pure-", "mix-"))):
        path = os.path.join(FIX, "gguf", n)
        out = t(n + ".safetensors")
        mc("convert", path, out, "--dtype", "F32")
        ours, _ = read_st(out)
        for x in GGUFReader(path).tensors:
            theirs = dequantize(x.data, x.tensor_type).astype(np.float32).reshape(-1)
            mine = ours[x.name].numpy().reshape(-1)
            assert mine.shape == theirs.shape, (n, x.name)
            same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
            assert same.all(), (n, x.name, x.tensor_type.name, int((~same).sum()))


@check
def dequantizers_agree_with_gguf_py_on_random_blocks():
    """Random block bytes (any scale, incl. NaN/Inf/denormal f16) of every
    type we dequantize, written by gguf-py; ours must equal gguf-py's."""
    from gguf.quants import dequantize
    from gguf.constants import GGML_QUANT_SIZES
    names = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
             "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"]
    rng = np.random.default_rng(42)
    path = t("random_blocks.gguf")
    w = GGUFWriter(path, arch="test")
    raw = {}
    for n in names:
        qt = GGMLQuantizationType[n]
        bs, ts = GGML_QUANT_SIZES[qt]
        data = rng.integers(0, 256, (8, 512 // bs * ts), dtype=np.uint8)
        raw[n] = (qt, data)
        w.add_tensor(n, data, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = t("random_blocks.safetensors")
    mc("convert", path, out, "--dtype", "F32")
    ours, _ = read_st(out)
    for n, (qt, data) in raw.items():
        with np.errstate(all="ignore"):  # random scales overflow, as they may
            theirs = dequantize(data, qt).astype(np.float32).reshape(-1)
        mine = ours[n].numpy().reshape(-1)
        same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
        assert same.all(), (n, int((~same).sum()), mine[~same][:4], theirs[~same][:4])


@check
def checkpoints_convert_to_what_torch_load_returns():
    """Our safetensors from torch.save files (--all) equal torch.load(weights_only=True)."""
    d = os.path.join(FIX, "torch")
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    for name, entry in manifest.items():
        if entry["expect"] != "ok":
            continue
        out = t(name.replace("/", "_") + ".safetensors")
        mc("ckpt-to-safetensors", os.path.join(d, name), "-o", out, "--all")
        ours, meta = read_st(out)
        assert meta.get("format") == "pt", name
        obj = torch.load(os.path.join(d, name), weights_only=True, map_location="cpu")
        theirs = {}

        def walk(v, prefix):
            if isinstance(v, torch.Tensor):
                theirs[prefix] = v
            elif isinstance(v, dict):
                for k, x in v.items():
                    walk(x, f"{prefix}.{k}" if prefix else str(k))
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    walk(x, f"{prefix}.{i}" if prefix else str(i))
        walk(obj, "")
        assert set(ours) == set(theirs), (name, set(ours) ^ set(theirs))
        for k, v in theirs.items():
            assert ours[k].dtype == v.dtype and ours[k].shape == v.shape and raw(ours[k]) == raw(v), (name, k)


def zipfile_ok(path):
    import zipfile
    with zipfile.ZipFile(path) as z:
        return z.testzip() is None


@check
def torch_load_reads_our_pt_files():
    """safetensors (and GGUF) → .pt by modelconv; torch.load(weights_only=True) gives the same tensors."""
    out = t("ours.pt")
    mc("convert", REF_PATH, out)
    assert zipfile_ok(out)
    sd = torch.load(out, weights_only=True)
    assert set(sd) == set(REF), set(sd) ^ set(REF)
    for k, v in REF.items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape and raw(sd[k]) == raw(v), k
    g = os.path.join(FIX, "gguf", "in-f32.gguf")
    out2 = t("from_gguf.pt")
    mc("convert", g, out2)
    sd2 = torch.load(out2, weights_only=True)
    r = GGUFReader(g)
    for x in r.tensors:
        assert bytes(np.asarray(x.data).tobytes()) == raw(sd2[x.name]), x.name


failed = sum(1 for _, e in results if e)
print(f"interop: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
