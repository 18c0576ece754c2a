"""Minimal safetensors reader/writer with struct + numpy (no `safetensors` package needed).

Layout (docs/models.md §7.2): u64 little-endian header length n, n bytes of UTF-8 JSON (padded with spaces
to a multiple of 8), then the data section. Each tensor entry is
{"dtype": "BF16"|"F16"|"F32", "shape": [...], "data_offsets": [begin, end]} with offsets relative to the
data section (end exclusive); "__metadata__" is {"format": "pt"}. Tensors are row-major little-endian.

bf16 is handled as raw uint16: encode fp32 -> bf16 with round-to-nearest-even, decode by shifting into the
top half of a uint32.
"""
import json
import os
import struct

import numpy as np

DTYPES = {"F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2), "BF16": (np.dtype("<u2"), 2)}


def f32_to_bf16_bits(x):
    """fp32 array -> uint16 bf16 bit patterns, round-to-nearest-even; NaN kept as a quiet NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_bits_to_f32(bits):
    bits = np.ascontiguousarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_to_bf16(x):
    """fp32 -> nearest bf16 value, returned as fp32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def _encode(arr, dtype):
    arr = np.asarray(arr)
    if dtype == "F32":
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(arr, dtype="<f2").tobytes()
    if dtype == "BF16":
        if arr.dtype == np.uint16:  # already bit patterns
            return np.ascontiguousarray(arr, dtype="<u2").tobytes()
        return f32_to_bf16_bits(arr.astype(np.float32)).astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: ordered dict name -> fp32 numpy array (order preserved in the data section).
    dtype: one string for all tensors, or a dict name -> dtype."""
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        dt = dtype[name] if isinstance(dtype, dict) else dtype
        b = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": [int(s) for s in np.shape(arr)], "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return offset  # bytes of tensor data


def read_safetensors(path):
    """Returns (dict name -> fp32 numpy array, dict name -> dtype string, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    base = 8 + n
    out, dtypes = {}, {}
    for name, info in header.items():
        dt = info["dtype"]
        npdt, size = DTYPES[dt]
        b, e = info["data_offsets"]
        shape = info["shape"]
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * size or base + e > len(data):
            raise ValueError(f"{path}: bad offsets for {name}")
        raw = np.frombuffer(data, dtype=npdt, count=count, offset=base + b)
        arr = bf16_bits_to_f32(raw) if dt == "BF16" else raw.astype(np.float32)
        out[name] = arr.reshape(shape)
        dtypes[name] = dt
    return out, dtypes, meta


def write_sharded(folder, tensors, shards, dtype="F32"):
    """shards: list of lists of tensor names (one list per shard). Writes
    model-0000i-of-0000n.safetensors + model.safetensors.index.json."""
    n = len(shards)
    weight_map = {}
    total = 0
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        total += write_safetensors(os.path.join(folder, fname), {k: tensors[k] for k in names}, dtype)
        for k in names:
            weight_map[k] = fname
    assert set(weight_map) == set(tensors), "every tensor must be in exactly one shard"
    index = {"metadata": {"total_size": total}, "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return index


def read_checkpoint(folder):
    """Read a single-file or sharded checkpoint folder -> (name -> fp32 array, name -> dtype)."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        out, dts = {}, {}
        for fname in sorted(set(wm.values())):
            t, d, _ = read_safetensors(os.path.join(folder, fname))
            out.update(t)
            dts.update(d)
        assert set(out) == set(wm)
        return out, dts
    t, d, _ = read_safetensors(os.path.join(folder, "model.safetensors"))
    return t, d


def map_safetensors(path):
    """Lazy view of one safetensors file, for checkpoints larger than memory: returns
    {name: (dtype string, shape list, 1-D numpy memmap of the raw elements)}. BF16 stays as uint16 bit patterns
    and nothing is converted or read until the caller touches the array."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: shorter than the 8-byte safetensors header length")
        (n,) = struct.unpack("<Q", head)
        size = os.fstat(f.fileno()).st_size
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dt}; expected one of {sorted(DTYPES)}")
        npdt, esize = DTYPES[dt]
        b, e = info["data_offsets"]
        shape = [int(s) for s in info["shape"]]
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * esize or base + e > size:
            raise ValueError(f"{path}: bad offsets for {name}")
        raw = np.memmap(path, dtype=npdt, mode="r", offset=base + b, shape=(count,)) if count else np.zeros(0, npdt)
        out[name] = (dt, shape, raw)
    return out


def map_checkpoint(folder):
    """map_safetensors over a single-file or sharded checkpoint folder (shards resolved through weight_map)."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for fname in sorted(set(wm.values())):
            out.update(map_safetensors(os.path.join(folder, fname)))
        missing = set(wm) - set(out)
        if missing:
            raise ValueError(f"{folder}: weight_map names tensors its shards do not hold: {sorted(missing)[:3]}")
        return out
    return map_safetensors(os.path.join(folder, "model.safetensors"))
