"""Run a trained net over its data and store named blobs per item (Caffe's extract_features).

LMDB output holds one Datum per item under keys ``%010d`` with the blob's values in
``float_data`` and channels/height/width from the blob's trailing axes, as Caffe's tool
writes them; HDF5 output holds one dataset per blob, items along the first axis.
"""

import os

import numpy as np

from .errors import UsageError
from .log import logger
from .proto import caffe_pb2


def _datum(values):
    """A float Datum of one item's values (C, H, W from the trailing axes, 1 where absent)."""
    d = caffe_pb2.Datum()
    shape = list(values.shape) + [1] * (3 - values.ndim)
    d.channels, d.height, d.width = (int(s) for s in shape[-3:]) if values.ndim <= 3 else \
        (int(np.prod(values.shape[:-2])), int(values.shape[-2]), int(values.shape[-1]))
    d.float_data.extend(values.ravel().tolist())
    return d


def extract_features(net, blob_names, outputs, batches, backend="lmdb"):
    """Forward ``batches`` times; write every item of each named blob to its output."""
    from .data.lmdb_io import open_writer

    if len(blob_names) != len(outputs):
        raise UsageError(f"{len(blob_names)} blob names but {len(outputs)} output datasets: "
                         "give one output per blob")
    for name in blob_names:
        if name not in net.blobs:
            raise UsageError(f"no blob named '{name}' in net '{net.name}' (blobs: "
                             f"{', '.join(net.blobs)})")
    if backend == "hdf5":
        collected = {name: [] for name in blob_names}
        for _ in range(batches):
            net.forward_from_to()
            for name in blob_names:
                collected[name].append(net.blobs[name].data.copy())
        import h5py

        from .atomic import atomic_write

        for name, path in zip(blob_names, outputs):
            with atomic_write(path) as f, h5py.File(f, "w") as h:
                h.create_dataset(name, data=np.concatenate(collected[name]), compression="gzip")
            logger.info("Extracted features of blob %s into %s", name, path)
        return
    writers = []
    try:
        for path in outputs:
            if os.path.exists(path):
                raise UsageError(f"output database '{path}' already exists; remove it first")
            writers.append(open_writer(path, backend))
        index = 0
        for b in range(batches):
            net.forward_from_to()
            n = None
            for name, w in zip(blob_names, writers):
                data = net.blobs[name].data
                n = data.shape[0] if data.ndim else 1
                for i in range(n):
                    w.put(b"%010d" % (index + i), _datum(data[i]).SerializeToString())
            index += n or 0
            if (b + 1) % 10 == 0:
                logger.info("Extracted features of %d query images", index)
        for w in writers:
            w.close()
        writers = []
        logger.info("Extracted features of %d query images", index)
    finally:
        for w in writers:
            w.abort()
