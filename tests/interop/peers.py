"""The published-bypass corpus (our fixtures of every class SECURITY.md
lists) and a benign corpus, scanned live by picklescan 1.0.5, modelscan
0.8.8, modelaudit 0.2.54, fickling 0.1.12 and modelconv. Prints the
Markdown table SECURITY.md carries and fails when modelconv misses a
payload or flags a benign file.

A tool "flags" a file when its CLI says it found an issue (exit 1 for all
four); exit 2 and above is its own error (it could not read the file),
shown as "error"; 0 is "clean".

usage: peers.py PEERS_VENV_BIN MODELCONV FIXTURES
"""
import glob
import json
import os
import subprocess
import sys

BIN, MC, FIX = sys.argv[1], sys.argv[2], sys.argv[3]
ENV = dict(os.environ, PROMPTFOO_DISABLE_TELEMETRY="1", NO_COLOR="1")


def files(*patterns):
    out = []
    for p in patterns:
        out += sorted(glob.glob(os.path.join(FIX, p)))
    return [f for f in out if not f.endswith((".json", ".py", ".md", ".bin"))]


# (class, files): every payload runs code, reads or writes files under its loader.
PAYLOADS = [
    ("pickle opcodes and globals", files("malicious/*.pkl", "malicious/*.pt")),
    ("npz object arrays (deflate, bzip2, LZMA)", files("malicious/*.npz")),
    ("zip tricks and broken pickles", files("malicious/zip_tricks/*")),
    ("joblib (plain and compressed)", files("joblib/payload_*")),
    ("Keras gadgets and readings", files("keras/lambda.*", "keras/gadgets/*.keras", "keras/gadgets/*.h5")),
    ("chat templates (CVE-2024-34359)", files("chat_templates/hostile/*")),
    ("TensorFlow SavedModel file/Python ops", files("tf/hostile/[mprw]*/saved_model.pb")),
    ("HDF5 external links and storage", files("hdf5/ext_absolute.h5", "hdf5/ext_climb.h5", "hdf5/efl_absolute.h5")),
    ("ONNX external data outside the folder", files("onnx/traversal/*.onnx")),
]
BENIGN = files(
    "torch/*_7.pt", "torch/*.pth", "torch/*.ckpt", "torch/tied_7.bin", "joblib/benign_*", "safetensors/*.safetensors",
    "gguf/*.gguf", "onnx/*.onnx", "numpy/*.npy", "numpy/*.npz", "hdf5/contiguous.h5", "hdf5/chunked.h5",
    "tf/hostile/benign/saved_model.pb", "tf/sm/saved_model.pb", "chat_templates/llama.cpp/[A-G]*.jinja",
)
BENIGN = [f for f in BENIGN if "whole_module" not in f and "scripted" not in f]


def peer(tool, path):
    cmd = {
        "picklescan": [f"{BIN}/picklescan", "-p", path],
        "modelscan": [f"{BIN}/modelscan", "-p", path],
        "modelaudit": [f"{BIN}/modelaudit", "scan", "-q", path],
        "fickling": [f"{BIN}/fickling", "--check-safety", path],
    }[tool]
    try:
        rc = subprocess.run(cmd, capture_output=True, timeout=300, env=ENV).returncode
    except subprocess.TimeoutExpired:
        return "error"
    return {0: "clean", 1: "flagged"}.get(rc, "error")


def modelconv(path):
    p = subprocess.run([MC, "scan", "--json", path], capture_output=True, text=True, timeout=300)
    doc = json.loads(p.stdout)
    return doc["verdict"]


TOOLS = ["picklescan", "modelscan", "modelaudit", "fickling"]
counts = {t: [0, 0] for t in TOOLS + ["modelconv"]}  # [payloads flagged, benign flagged]
missed = []
print("| class | file | " + " | ".join(TOOLS) + " | modelconv |")
print("|---|---|" + "---|" * (len(TOOLS) + 1))
total = 0
for cls, paths in PAYLOADS:
    for path in paths:
        total += 1
        row = [peer(t, path) for t in TOOLS]
        ours = modelconv(path)
        for t, r in zip(TOOLS, row):
            counts[t][0] += r == "flagged"
        counts["modelconv"][0] += ours != "safe"
        if ours == "safe":
            missed.append(path)
        print(f"| {cls} | `{os.path.relpath(path, FIX)}` | " + " | ".join(row) + f" | {ours} |")
false_alarms = []
for path in BENIGN:
    for t in TOOLS:
        counts[t][1] += peer(t, path) == "flagged"
    ours = modelconv(path)
    if ours != "safe":
        counts["modelconv"][1] += 1
        false_alarms.append(path)
print()
print(f"| tool | payloads flagged (of {total}) | benign files flagged (of {len(BENIGN)}) |")
print("|---|---:|---:|")
for t in TOOLS + ["modelconv"]:
    print(f"| {t} | {counts[t][0]} | {counts[t][1]} |")
if missed or false_alarms:
    print("modelconv missed:", missed, "false alarms:", false_alarms)
    sys.exit(1)
