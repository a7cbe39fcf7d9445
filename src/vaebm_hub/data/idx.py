"""Reader for the IDX format of the MNIST files (plain or gzip-compressed).

Layout: two zero bytes, a dtype code, the number of dimensions ``n``, then ``n`` big-endian uint32 sizes, then the
array in C order with big-endian elements.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file into an array of shape ``(d_1, ..., d_n)`` with the file's dtype (native byte order)."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}); expected MNIST-style data.")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path} is truncated or corrupt: its header says {expected} bytes, the file has {len(raw)}.")
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))
