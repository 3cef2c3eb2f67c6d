"""Process-wide thread settings, applied before numpy, torch or faiss load their thread pools.

On a 2-core machine three runtimes (torch's Intel OpenMP, faiss's GNU OpenMP, numpy's OpenBLAS) each spin-wait
for work after a call, and starve each other: a single e5 embedding took 620 ms inside the router instead of
30 ms alone. Passive waiting and single-threaded BLAS/faiss (small matrices) bring it back (BENCHMARKS.md).
"""
import os

for _name, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("KMP_BLOCKTIME", "0"), ("OPENBLAS_NUM_THREADS", "1"),
                      ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)
