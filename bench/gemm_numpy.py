"""NumPy/OpenBLAS side of `npm run bench -- gemm`: times float32 matrix products on the shapes bench/gemm.ts sends.

Usage: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/gemm_numpy.py '<json list of shapes>' <seconds per shape>
A shape is {"name", "M", "K", "N", "transA", "transB"}; transA means A is stored (K, M) and used transposed (NumPy
passes the flag to sgemm, no copy is made). Prints one JSON object per line: first {"blas": ...} describing the
library and kernel that ran, then {"name", "best_s", "median_s", "cpu_best_s", "cpu_median_s", "reps"} per shape:
wall-clock and process CPU time (the machine is shared; CPU time does not count time spent preempted).
"""

import ctypes
import json
import os
import sys
import time

import numpy as np


def blas_info():
    """Which BLAS numpy's matmul ends up in, and (for OpenBLAS) its build config and the core kernel chosen."""
    info = {"numpy": np.__version__, "threads_env": os.environ.get("OPENBLAS_NUM_THREADS")}
    info["coretype_env"] = os.environ.get("OPENBLAS_CORETYPE")
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in os.path.basename(path).lower() or "lapack" in os.path.basename(path).lower():
                libs.add(os.path.realpath(path))
    info["libraries"] = sorted(libs)
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
            get_config = lib.openblas_get_config
            get_config.restype = ctypes.c_char_p
            get_core = lib.openblas_get_corename
            get_core.restype = ctypes.c_char_p
            info["openblas_config"] = get_config().decode()
            info["openblas_core"] = get_core().decode()
            info["openblas_threads"] = lib.openblas_get_num_threads()
            break
        except (OSError, AttributeError):
            continue
    return info


def time_shape(shape, seconds, rng):
    m, k, n = shape["M"], shape["K"], shape["N"]
    a = rng.standard_normal((k, m) if shape["transA"] else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if shape["transB"] else (k, n), dtype=np.float32)
    op_a = a.T if shape["transA"] else a
    op_b = b.T if shape["transB"] else b
    c = np.empty((m, n), dtype=np.float32)
    for _ in range(2):
        np.matmul(op_a, op_b, out=c)
    times, cpu = [], []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0, c0 = time.perf_counter(), time.process_time()
        np.matmul(op_a, op_b, out=c)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    times.sort()
    cpu.sort()
    return {
        "name": shape["name"],
        "best_s": times[0],
        "median_s": times[len(times) // 2],
        "cpu_best_s": cpu[0],
        "cpu_median_s": cpu[len(cpu) // 2],
        "reps": len(times),
    }


def main():
    shapes = json.loads(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    # matmul first, so that the BLAS library is loaded before we look for it in the memory map
    np.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    print(json.dumps({"blas": blas_info()}), flush=True)
    rng = np.random.default_rng(0)
    for shape in shapes:
        print(json.dumps(time_shape(shape, seconds, rng)), flush=True)


if __name__ == "__main__":
    main()
