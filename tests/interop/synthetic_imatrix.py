"""A synthetic importance matrix of hard cases, for the interop suite and
fixtures/imatrix/gen_golden.py."""
import gguf
import numpy as np


def synthetic_imatrix(src, path):
    """A matrix for every 2-D and 3-D weight of `src` with hard cases: zero
    and tiny columns, an expert that saw no token (count 0), fractional
    counts (rounded by the loader); GGUF form."""
    rng = np.random.default_rng(11)
    w = gguf.GGUFWriter(path, "imatrix")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 3)
    w.add_uint32("imatrix.chunk_size", 64)
    for t in gguf.GGUFReader(src).tensors:
        if len(t.shape) < 2 or not t.name.endswith(".weight"):
            continue
        ne0, n_mat = int(t.shape[0]), int(t.shape[2]) if len(t.shape) > 2 else 1
        sums = (rng.gamma(0.5, 2.0, (n_mat, ne0)) * 10).astype(np.float32)
        sums[:, ::17] = 0.0
        sums[:, 5::23] = np.float32(1e-30)
        counts = np.full((n_mat, 1), 7.4, np.float32)
        if n_mat > 1:
            counts[1] = 0.0
            counts[-1] = 2.5
        w.add_tensor(t.name + ".in_sum2", sums)
        w.add_tensor(t.name + ".counts", counts)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
