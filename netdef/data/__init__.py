"""Datasets in: Datum records, LMDB/HDF5 files, images, mean files, the DataTransformer.

Modules (each small, none knows about layers or nets):
- ``datum``: parse and check Caffe's Datum records (raw, float, encoded).
- ``lmdb_io``: wrapping cursor readers (LMDB; LevelDB with the optional plyvel) and an
  atomic LMDB writer.
- ``images``: decode/encode/resize with OpenCV's pixel arithmetic (Pillow + numba).
- ``mean``: ``.binaryproto`` mean files and computing a mean.
- ``transformer``: crop / mirror / mean / scale in one numba pass.
- ``prefetch``: the background batch thread.
- ``datum_loader``, ``image_list``, ``hdf5_io``, ``window``: the batch sources of the
  Data, ImageData, HDF5Data/HDF5Output and WindowData layers, and the converters.
- ``mnist``: MNIST idx files.
"""
