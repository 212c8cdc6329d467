"""Trained weights in and out: Caffe's binary .caffemodel and its HDF5 .caffemodel.h5.

A binary caffemodel is a NetParameter whose layers carry their parameter blobs (any
format version; it is upgraded like a prototxt).  The HDF5 form (Caffe's
``snapshot_format: HDF5``) holds one group per layer under ``/data`` with one dataset
per parameter, named by its index ("0", "1", ...), and the same layout under ``/diff``
when diffs were saved.  Anything else gets a WeightsError saying what the file looks
like.  Nothing is ever unpickled.
"""

import logging
import os

import numpy as np

from .atomic import atomic_write
from .errors import PrototxtError, WeightsError
from .proto import caffe_pb2
from .prototxt import looks_like_text, sniff_magic
from .upgrade import upgrade_net

log = logging.getLogger("netdef")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# ------------------------------------------------------------------- blobs

def blob_shape(blob):
    """The shape Caffe gives a BlobProto: the legacy (num, channels, height, width) when
    any of those is set (always 4-D, nothing dropped), otherwise `shape.dim`."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(int(d) for d in blob.shape.dim)


def blob_to_array(blob, name=None):
    """A float32 ndarray of the blob's data in its shape (double_data when that is
    what the blob holds).  `name` only labels error messages."""
    shape = blob_shape(blob)
    values = blob.double_data if len(blob.double_data) else blob.data
    count = int(np.prod(shape, dtype=np.int64))
    if any(d < 0 for d in shape):
        raise WeightsError(f"{_label(name)}has a negative dimension in shape {shape}")
    if len(values) != count:
        raise WeightsError(
            f"{_label(name)}holds {len(values)} values but its shape {shape} needs {count}")
    return np.array(values, dtype=np.float32).reshape(shape)


def array_to_blob(array, blob_proto=None, diff=None):
    """Fill (or create) a BlobProto with `array` as float32 data in `shape.dim`, and
    `diff` (same size) when given."""
    blob = caffe_pb2.BlobProto() if blob_proto is None else blob_proto
    blob.Clear()
    data = np.asarray(array, dtype=np.float32, order="C")
    blob.shape.dim.extend(int(d) for d in data.shape)
    _append_floats(blob, _DATA_FIELD, data)
    if diff is not None:
        diff = np.asarray(diff, dtype=np.float32, order="C")
        if diff.size != data.size:
            raise WeightsError(f"diff of shape {diff.shape} does not match data of shape "
                               f"{data.shape}")
        _append_floats(blob, _DIFF_FIELD, diff)
    return blob


_DATA_FIELD = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["data"].number
_DIFF_FIELD = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["diff"].number


def _append_floats(blob, field_number, array):
    """Append float32 values to a packed repeated float field of `blob`.

    Handing protobuf the field's wire bytes (tag, length, little-endian floats) is
    ~10x faster than extending the field value by value, which matters for nets with
    hundreds of millions of weights.
    """
    payload = np.asarray(array, dtype="<f4", order="C").tobytes()
    if not payload:
        return
    tag = _varint((field_number << 3) | 2)  # wire type 2: length-delimited (packed)
    blob.MergeFromString(tag + _varint(len(payload)) + payload)


def _varint(value):
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def shapes_match(source_shape, target_shape):
    """Caffe's rule for copying a stored blob into a net blob: equal shapes, or a
    4-D legacy shape that equals the target padded with leading 1s to 4 axes."""
    source_shape = tuple(source_shape)
    target_shape = tuple(target_shape)
    if source_shape == target_shape:
        return True
    if len(source_shape) == 4 and len(target_shape) <= 4:
        return source_shape == (1,) * (4 - len(target_shape)) + target_shape
    return False


def _label(name):
    return f"blob {name}: " if name else "blob: "


# ------------------------------------------------------------------ loading

def load_weights(path):
    """[(layer name, [parameter arrays])] in file order from a caffemodel or an HDF5
    caffemodel.h5.  Layers without parameters are left out.  In an HDF5 file a
    parameter that the net shares with another layer is not stored; its place in the
    list holds None."""
    path = os.fspath(path)
    head = _check_readable(path)
    if head.startswith(_HDF5_MAGIC) or _is_hdf5(path):
        return _load_hdf5(path)
    magic = sniff_magic(head)
    if magic:
        raise WeightsError(f"{path}: not a caffemodel: the file is {magic}")
    if looks_like_text(head):
        described = _describe_text(path)
        if described is not None:
            raise WeightsError(f"{path}: not a caffemodel: {described}")
        try:
            return _load_binary(path)  # a rare caffemodel whose head reads as text
        except WeightsError:
            raise WeightsError(f"{path}: not a caffemodel: the file is text, not a binary "
                               "caffemodel") from None
    return _load_binary(path)


def load_net_weights_binary(path):
    """The upgraded NetParameter of a binary caffemodel (layers with their blobs)."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read()
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except Exception as exc:  # DecodeError, or a RuntimeError from very broken data
        raise WeightsError(f"{path}: not a caffemodel: {_describe_broken(data, exc)}") from None
    if not _plausible_net(net):
        raise WeightsError(f"{path}: not a caffemodel: {_describe_broken(data, None)}")
    try:
        upgrade_net(net, path)
    except PrototxtError as exc:
        raise WeightsError(f"{path}: cannot upgrade this old caffemodel: {exc}") from None
    return net


def _check_readable(path):
    if os.path.isdir(path):
        raise WeightsError(f"{path}: not a caffemodel: {_describe_directory(path)}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights file: {exc.strerror}") from None
    if not head:
        raise WeightsError(f"{path}: not a caffemodel: the file is empty")
    return head


def _load_binary(path):
    net = load_net_weights_binary(path)
    out = []
    for layer in net.layer:
        if not layer.blobs:
            continue
        arrays = [blob_to_array(blob, f"{i} of layer '{layer.name}' in {path}")
                  for i, blob in enumerate(layer.blobs)]
        out.append((layer.name, arrays))
    if not out:
        log.warning("%s: the net in this file has %d layers but none carries weights",
                    path, len(net.layer))
    return out


def _plausible_net(net):
    """Other binary protos can decode as a NetParameter by accident.  A real one has
    layers, and either carries weights or has no fields unknown to the schema (forks
    may add their own fields, so those alone do not disqualify a file with weights)."""
    if not (len(net.layer) or len(net.layers)):
        return False
    if any(layer.blobs for layer in net.layer) or \
            any(layer.blobs or layer.layer.blobs for layer in net.layers):
        return True
    try:
        from google.protobuf import unknown_fields
        return len(unknown_fields.UnknownFieldSet(net)) == 0
    except (ImportError, AttributeError, TypeError):
        return True


def _describe_broken(data, exc):
    """Why bytes that are not images/HDF5/text failed to be a caffemodel."""
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(data)
        if state.HasField("learned_net") and state.HasField("iter"):
            return (f"the file is a solver state (.solverstate, iteration {state.iter}); "
                    f"its weights are in '{state.learned_net}'")
    except Exception:  # noqa: BLE001 - any failure just means "not a solver state"
        pass
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(data)
        shape = blob_shape(blob)
        if shape and len(blob.data) + len(blob.double_data) == int(np.prod(shape)):
            dims = "x".join(str(d) for d in shape)
            return (f"the file is a single blob ({dims}; a .binaryproto such as a mean "
                    "image), not a net's weights")
    except Exception:  # noqa: BLE001 - any failure just means "not a blob"
        pass
    if exc is not None:
        return (f"the bytes do not decode as a binary NetParameter ({exc}); the file is "
                "truncated, corrupt, or of another kind")
    return "it decodes as no NetParameter with layers (wrong kind of binary file?)"


def _describe_text(path):
    with open(path, "rb") as handle:
        data = handle.read(1 << 20)
    text = data.decode("utf-8", errors="replace")
    from google.protobuf import text_format
    for kind, message in (("a net definition (prototxt)", caffe_pb2.NetParameter()),
                          ("a solver definition (prototxt)", caffe_pb2.SolverParameter())):
        try:
            text_format.Parse(text, message)
        except Exception:  # noqa: BLE001 - not this kind of text
            continue
        if message.ListFields():
            return f"the file is {kind}, not trained weights"
    return None


def _describe_directory(path):
    names = set(os.listdir(path))
    if "data.mdb" in names:
        return "the path is an LMDB database directory (a dataset), not weights"
    if "CURRENT" in names and any(n.startswith("MANIFEST") for n in names):
        return "the path is a LevelDB database directory (a dataset), not weights"
    return "the path is a directory"


# --------------------------------------------------------------------- HDF5

def _is_hdf5(path):
    try:
        import h5py
    except ImportError:
        return False
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def _load_hdf5(path):
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: an HDF5 file that cannot be opened: {exc}") from None
    try:
        with handle:
            data = handle.get("data")
            if not isinstance(data, h5py.Group):
                raise WeightsError(f"{path}: not a caffemodel: {_describe_hdf5(handle)}")
            out = []
            _collect_hdf5_layers(data, "", out, path)
    except WeightsError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        # h5py reports damaged internals (bad headers, checksums) as any of these
        raise WeightsError(f"{path}: a damaged HDF5 file: {exc}") from None
    return out


def _collect_hdf5_layers(group, prefix, out, path, keys=None):
    """Layers are groups of datasets named "0", "1", ...; a layer name with '/' in it
    shows up as nested groups."""
    import h5py

    for key in (group if keys is None else keys):
        item = group[key]
        name = prefix + key
        if not isinstance(item, h5py.Group):
            raise WeightsError(
                f"{path}: /data/{name} is a dataset where Caffe's layout has a layer group")
        params = {}
        subgroups = []
        for child_key in item:
            child = item[child_key]
            if isinstance(child, h5py.Group):
                subgroups.append(child_key)
            elif child_key.isdigit():
                params[int(child_key)] = np.asarray(child[()], dtype=np.float32)
            else:
                raise WeightsError(
                    f"{path}: /data/{name}/{child_key}: parameter datasets are named by "
                    "their index (0, 1, ...)")
        if params:
            out.append((name, [params.get(i) for i in range(max(params) + 1)]))
        if subgroups:
            _collect_hdf5_layers(item, name + "/", out, path, subgroups)


def _describe_hdf5(handle):
    import h5py

    keys = list(handle.keys())
    if "history" in keys and "learned_net" in keys:
        learned = handle["learned_net"]
        where = ""
        if isinstance(learned, h5py.Dataset):
            value = learned[()]
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            where = f"; its weights are in '{value}'"
        return f"the file is an HDF5 solver state (.solverstate.h5){where}"
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return (f"an HDF5 file without Caffe's weights layout (no /data group of layers); "
            f"its top level holds: {shown or 'nothing'}")


# ------------------------------------------------------------------- saving

def save_caffemodel(path, net_param):
    """Write a NetParameter (layers with blobs) as a binary caffemodel, atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(net_param.SerializeToString())


def save_weights_hdf5(path, layers, diffs=None):
    """Write Caffe's HDF5 weights: /data/<layer>/<i> for each (name, [arrays]), and
    /diff/<layer>/<i> from `diffs` (same structure) when given.  Every layer gets its
    group, even with no parameters, as Caffe writes it; a None array (a parameter
    owned by another layer) is not stored under /data."""
    import h5py

    names = [name for name, _ in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WeightsError(f"{os.fspath(path)}: duplicate layer names {duplicates}")
    if diffs is not None and len(diffs) != len(layers):
        raise WeightsError(f"{os.fspath(path)}: {len(diffs)} diff entries for "
                           f"{len(layers)} layers")
    with atomic_write(path, "wb") as handle:
        with h5py.File(handle.name, "w") as h5:
            _write_hdf5_group(h5.create_group("data"), layers)
            if diffs is not None:
                _write_hdf5_group(h5.create_group("diff"), diffs)


def _write_hdf5_group(root, layers):
    for name, arrays in layers:
        group = root.require_group(name)
        for i, array in enumerate(arrays):
            if array is None:
                continue
            group.create_dataset(str(i), data=np.asarray(array, dtype=np.float32, order="C"))
