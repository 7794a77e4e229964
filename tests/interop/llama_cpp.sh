#!/usr/bin/env bash
# Builds llama.cpp's tools (llama-quantize, llama-imatrix, llama-simple, llama-embedding,
# llama-tokenize, llama-gguf-split, llama-export-lora, llama-mtmd-cli, llama-completion) from the llama.cpp vendored in the llama-cpp-python source
# package on PyPI, and unpacks its convert_hf_to_gguf.py and gguf-py. Cached
# under target/llama.cpp-<version>/: a rerun with the tools built skips it.
# Prints the llama.cpp folder. Needs the interop venv (cmake and ninja are
# pip-installed into it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/target/interop-venv"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
base="$root/target/llama.cpp-$version"
src="$base/llama_cpp_python-$version/vendor/llama.cpp"
bin="$base/build/bin"
tools=(llama-quantize llama-imatrix llama-simple llama-embedding llama-tokenize llama-gguf-split llama-export-lora llama-mtmd-cli llama-completion)
done_all=1
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || done_all=0; done
if [ $done_all = 1 ] && [ -f "$src/convert_hf_to_gguf.py" ]; then
  echo "$src"
  exit 0
fi
mkdir -p "$base"
if [ ! -f "$src/convert_hf_to_gguf.py" ]; then
  # The sdist's address and digest from PyPI's JSON API (pip itself would
  # try to build the package to learn its metadata).
  "$venv/bin/python" - "$version" "$base" >&2 <<'PY'
import hashlib, json, sys, tarfile, urllib.parse, urllib.request
version, base = sys.argv[1], sys.argv[2]
api = "https://pypi.org/pypi/llama-cpp-python/json"
info = json.load(urllib.request.urlopen(api, timeout=120))
files = info.get("releases", {}).get(version) or (info["urls"] if info["info"]["version"] == version else [])
sdist = next((u for u in files if u["packagetype"] == "sdist"), None)
if sdist is None:
    sys.exit(f"llama-cpp-python {version}: no source package listed on PyPI")
url = urllib.parse.urljoin(api, sdist["url"])
path = f"{base}/{sdist['filename']}"
print(f"llama.cpp: downloading {sdist['filename']} ({sdist['size']} bytes)")
urllib.request.urlretrieve(url, path)
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
if digest != sdist["digests"]["sha256"]:
    sys.exit(f"{path}: sha256 {digest}, PyPI says {sdist['digests']['sha256']}")
with tarfile.open(path) as tar:
    tar.extractall(base, filter="data")
PY
fi
if [ ! -x "$venv/bin/cmake" ] || [ ! -x "$venv/bin/ninja" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check cmake ninja >&2
fi
echo "llama.cpp: building ${tools[*]} (a few minutes, once)" >&2
PATH="$venv/bin:$PATH" cmake -S "$src" -B "$base/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
PATH="$venv/bin:$PATH" cmake --build "$base/build" --target "${tools[@]}" -j "$(nproc)" >&2
echo "$src"
