"""One exception family for everything a user can get wrong.

Each message names what the user can act on: the file and line:column for text,
the layer name/type and blob with shapes, the database key, the flag.  The command
line prints the message alone (``netdef: error: ...``) unless ``--debug`` is given.
"""


class NetdefError(Exception):
    """Base of every error netdef raises on purpose."""

    exit_code = 1


class PrototxtError(NetdefError):
    """A prototxt / binary proto that does not parse or is not what it should be."""


class ShapeError(NetdefError):
    """Blob shapes that do not fit together (names the layer, blobs and shapes)."""


class LayerError(NetdefError):
    """A layer whose parameters or connections are impossible."""


class WeightsError(NetdefError):
    """A weights file that is not a caffemodel, or does not fit the net."""


class DataError(NetdefError):
    """A dataset (LMDB, HDF5, image list, mean file) that cannot be read."""


class SolverError(NetdefError):
    """A solver definition that cannot run."""


class UsageError(NetdefError):
    """Bad command-line use."""

    exit_code = 2


def layer_context(layer_param):
    """`layer 'conv1' (Convolution)` for messages."""
    name = getattr(layer_param, "name", "") or "<unnamed>"
    kind = getattr(layer_param, "type", "") or "?"
    return f"layer '{name}' ({kind})"


class MemoryLimitError(NetdefError):
    """An allocation the machine cannot hold (says how much was asked and how much is free)."""
