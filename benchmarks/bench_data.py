"""Data layer throughput: how many images/s the prefetching Data layer delivers.

Two cases from temporary LMDBs of random pixels:
- CIFAR-sized: raw 3x32x32 uint8 records, batch 100, mean_value + scale (TRAIN mirror);
- ImageNet-sized: encoded JPEG 3x256x256 records, batch 64, crop 227 + mirror (TRAIN).
For each, the layer's forward is called back to back (no net compute, so the loader is
the only work) and the steady-state images/s and ms per batch are printed, next to the
cost of loading a batch synchronously in the calling thread.
Run: python benchmarks/bench_data.py [--batches N]
"""

import argparse
import os
import shutil
import tempfile
import time

import netdef  # noqa: F401  (first: sets the BLAS thread policy before numpy loads)

# isort: split
import numpy as np
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.data.datum import array_to_datum, encoded_datum
from netdef.data.images import encode_image
from netdef.data.lmdb_io import LMDBWriter
from netdef.layer import create_layer
from netdef.proto import caffe_pb2


def smooth_image(rng, h, w):
    """Random but JPEG-like (smooth) content, so decode cost is realistic."""
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
    big = np.kron(small, np.ones((16, 16, 1), np.float32))[:h, :w]
    noise = rng.normal(0, 12, (h, w, 3))
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def make_raw_db(path, n, shape, rng):
    with LMDBWriter(path) as w:
        for i in range(n):
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            w.put(f"{i:08d}", array_to_datum(arr, i % 10).SerializeToString())


def make_jpeg_db(path, n, size, rng):
    pool = [encode_image(smooth_image(rng, size, size), "jpg") for _ in range(32)]
    with LMDBWriter(path) as w:
        for i in range(n):
            w.put(f"{i:08d}", encoded_datum(pool[i % len(pool)], i % 1000).SerializeToString())
    return sum(len(p) for p in pool) / len(pool)


def data_layer(source, batch, transform, prefetch=4):
    text = (f'name: "data" type: "Data" top: "data" top: "label" '
            f'transform_param {{ {transform} }} '
            f'data_param {{ source: "{source}" backend: LMDB batch_size: {batch} '
            f'prefetch: {prefetch} }}')
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.phase = caffe_pb2.TRAIN
    layer = create_layer(lp, rng=np.random.default_rng(0))
    top = [Blob(name="data"), Blob(name="label")]
    layer.layer_setup([], top)
    return layer, top


def measure(source, batch, transform, batches):
    layer, top = data_layer(source, batch, transform)
    for _ in range(3):  # warm up: numba cache, thread pool, page cache
        layer.forward([], top)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        layer.forward([], top)
    dt = time.perf_counter() - t
    cpu_ms = (time.process_time() - cpu) / batches * 1e3
    layer.close()
    sync, stop = data_layer(source, batch, transform, prefetch=0)
    sync.forward([], stop)
    t = time.perf_counter()
    for _ in range(max(3, batches // 4)):
        sync.forward([], stop)
    sync_ms = (time.perf_counter() - t) / max(3, batches // 4) * 1e3
    return batches * batch / dt, dt / batches * 1e3, cpu_ms, sync_ms, top[0].shape


def spin(ms):
    """Pure-Python work for ``ms`` milliseconds (needs the GIL); returns iterations done."""
    end = time.perf_counter() + ms / 1e3
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def gil_share(source, batch, transform, steps=25, step_ms=20):
    """How much Python work the training thread still gets done while the layer
    prefetches: iterations of ``spin`` between forwards, relative to no data layer."""
    idle = sum(spin(step_ms) for _ in range(steps))
    layer, top = data_layer(source, batch, transform)
    layer.forward([], top)
    busy = 0
    for _ in range(steps):
        busy += spin(step_ms)
        layer.forward([], top)
    layer.close()
    return busy / idle


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    try:
        cifar = os.path.join(tmp, "cifar")
        make_raw_db(cifar, 1000, (3, 32, 32), rng)
        imnet = os.path.join(tmp, "imagenet")
        jpeg_bytes = make_jpeg_db(imnet, 256, 256, rng)
        print(f"cpu count: {os.cpu_count()}")
        cases = [
            ("CIFAR 3x32x32 raw, batch 100, mean_value+scale+mirror", cifar, 100,
             "mirror: true scale: 0.00390625 mean_value: 125 mean_value: 123 "
             "mean_value: 114"),
            (f"ImageNet 3x256x256 JPEG ({jpeg_bytes / 1024:.0f} KiB), batch 64, crop 227+mirror",
             imnet, 64, "crop_size: 227 mirror: true mean_value: 104 mean_value: 117 "
                        "mean_value: 123"),
        ]
        for name, source, batch, transform in cases:
            ips, ms, cpu_ms, sync_ms, shape = measure(source, batch, transform, args.batches)
            share = gil_share(source, batch, transform)
            print(f"{name}: {ips:9.0f} images/s, {ms:7.2f} ms/batch prefetched "
                  f"({cpu_ms:.2f} CPU-ms/batch, all threads; top {shape}); "
                  f"{sync_ms:7.2f} ms/batch loaded synchronously; a Python-bound training "
                  f"thread keeps {share:.0%} of its speed while this layer prefetches")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
