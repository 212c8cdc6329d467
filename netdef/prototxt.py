"""Read and write Caffe's protos: text prototxt and binary files, upgraded on read.

Text goes through protobuf's own text_format parser (no hand-written parser); its
errors are turned into ``FILE:LINE:COL: what`` messages with the offending line, a
caret and, where we can tell, the names the user probably meant.  Nets and solvers
are upgraded from Caffe's older formats as Caffe does on load (see netdef.upgrade).
"""

import difflib
import logging
import os
import re

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .atomic import atomic_write
from .errors import PrototxtError
from .proto import caffe_pb2
from .upgrade import V1_TO_V2_TYPE, upgrade_net, upgrade_solver_param

log = logging.getLogger("netdef")

_POOL = caffe_pb2.DESCRIPTOR.pool


# ------------------------------------------------------------------ reading

def parse_text(text, message, filename="<string>"):
    """Parse prototxt `text` (str or bytes) into `message` (no upgrade); returns it."""
    if isinstance(text, (bytes, bytearray)):
        text = _decode_text(bytes(text), filename)
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise PrototxtError(_describe_parse_error(exc, text, filename)) from None
    return message


def read_text_proto(path, message):
    """Read a text prototxt file into `message` (no upgrade)."""
    data = _read_file(path, what="prototxt")
    return parse_text(_decode_text(data, path), message, filename=os.fspath(path))


def read_binary_proto(path, message):
    """Read a binary proto file into `message` (no upgrade)."""
    data = _read_file(path, what="binary proto")
    if not data:
        raise PrototxtError(f"{os.fspath(path)}: the file is empty")
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        kind = message.DESCRIPTOR.name
        looks = describe_content(data[:4096])
        raise PrototxtError(
            f"{os.fspath(path)}: not a binary {kind} ({exc}); the file looks like {looks}"
        ) from None
    return message


def parse_net_text(text, filename="<string>"):
    """A NetParameter from prototxt text, upgraded to the current format."""
    net = parse_text(text, caffe_pb2.NetParameter(), filename)
    upgrade_net(net, filename)
    return net


def read_net_param(path):
    """A NetParameter from a text prototxt file, upgraded."""
    net = read_text_proto(path, caffe_pb2.NetParameter())
    upgrade_net(net, os.fspath(path))
    return net


def read_net_param_binary(path):
    """A NetParameter from a binary file (e.g. a .caffemodel), upgraded."""
    net = read_binary_proto(path, caffe_pb2.NetParameter())
    upgrade_net(net, os.fspath(path))
    return net


def parse_solver_text(text, filename="<string>"):
    """A SolverParameter from prototxt text, upgraded (solver_type enum -> type string).

    Nets written inline (`net_param`, `train_net_param`, `test_net_param`) are upgraded
    too, so an old consolidated solver file still describes a usable net.
    """
    solver = parse_text(text, caffe_pb2.SolverParameter(), filename)
    upgrade_solver_param(solver, filename)
    if solver.HasField("net_param"):
        upgrade_net(solver.net_param, f"{filename} (net_param)")
    if solver.HasField("train_net_param"):
        upgrade_net(solver.train_net_param, f"{filename} (train_net_param)")
    for i, net in enumerate(solver.test_net_param):
        upgrade_net(net, f"{filename} (test_net_param #{i})")
    return solver


def read_solver_param(path):
    """A SolverParameter from a text prototxt file, upgraded."""
    data = _read_file(path, what="solver prototxt")
    return parse_solver_text(_decode_text(data, path), os.fspath(path))


# ------------------------------------------------------------------ writing

def to_text(message):
    """Caffe-style prototxt text (two-space indent, fields in schema order)."""
    return text_format.MessageToString(message)


def write_text(message, path):
    """Write `message` as prototxt, atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(to_text(message))


def write_binary(message, path):
    """Write `message` in protobuf binary form, atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(message.SerializeToString())


# --------------------------------------------------------- files and sniffing

def _read_file(path, what):
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise PrototxtError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise PrototxtError(f"{path}: is a directory, not a {what} file") from None
    except OSError as exc:
        raise PrototxtError(f"{path}: cannot read {what} file: {exc.strerror}") from None


_MAGIC = [
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a zip archive (a NumPy .npz, or a PyTorch checkpoint?)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
]


def sniff_magic(head):
    """What a file's first bytes say it is (e.g. "a PNG image"), or None."""
    for magic, description in _MAGIC:
        if head.startswith(magic):
            return description
    return None


def looks_like_text(head):
    """True for bytes that read as (UTF-8 or 8-bit) text: no NULs, few control bytes."""
    if not head or b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(head) // 100


def describe_content(head):
    """A short human description of what some bytes look like."""
    magic = sniff_magic(head)
    if magic:
        return magic
    if not head:
        return "an empty file"
    if looks_like_text(head):
        return "a text file"
    return "binary data of an unknown kind"


def _decode_text(data, path):
    """Bytes of a prototxt -> str, refusing binary files with a clear message.

    Bytes that are not UTF-8 (legacy-encoded comments) are kept as surrogates: they
    pass in comments and are reported with their line if they occur inside a value.
    """
    name = os.fspath(path)
    head = data[:8192]
    if not looks_like_text(head):
        looks = describe_content(head)
        if looks in ("binary data of an unknown kind", "a text file"):
            looks = "binary data (a binary proto such as a .caffemodel?)"
        raise PrototxtError(
            f"{name}: expected a text prototxt, but this is a binary file; it looks like "
            f"{looks}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape")


# ----------------------------------------------------------- parse errors

_POSITION = re.compile(r"^(\d+):(\d+) : ")
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_NO_ENUM_VALUE = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')
_EXPECTED_STRING = re.compile(r"Expected string but found: '(\w+)'")

# V1 fields met inside a current-format `layer { }`.
_V1_FIELD_HINTS = {
    "blobs_lr": "in `layer { }` write `param { lr_mult: ... }` (one per parameter blob)",
    "weight_decay": "in `layer { }` write `param { decay_mult: ... }`",
    "blob_share_mode": "in `layer { }` write `param { share_mode: ... }`",
}


def _describe_parse_error(exc, text, filename):
    message = str(exc)
    line = exc.GetLine() if hasattr(exc, "GetLine") else None
    column = exc.GetColumn() if hasattr(exc, "GetColumn") else None
    match = _POSITION.match(message)
    if match:
        line = line or int(match.group(1))
        column = column or int(match.group(2))
        message = message[match.end():]
    lines = text.splitlines()
    source_line = lines[line - 1] if line and 0 < line <= len(lines) else None
    if source_line is not None:
        quoted = f"'{source_line}': "
        if message.startswith(quoted):
            message = message[len(quoted):]
        else:
            message = re.sub(r"^'.*?': (?=[A-Z])", "", message, count=1)
    hint = _hint(message)
    if hint and not message.rstrip().endswith((".", "?", "!")):
        message = message.rstrip() + "."
    what = message + hint
    where = f"{filename}:{line}:{column}" if line else filename
    out = f"{where}: {what}"
    if source_line is not None and source_line.strip():
        caret = "".join("\t" if ch == "\t" else " " for ch in source_line[:max(column - 1, 0)])
        out += f"\n    {source_line}\n    {caret}^"
    return out


def _hint(message):
    match = _NO_FIELD.search(message)
    if match:
        return _field_hint(match.group(1), match.group(2))
    match = _NO_ENUM_VALUE.search(message)
    if match:
        enum = _find_enum(match.group(1))
        if enum is not None:
            names = [v.name for v in enum.values]
            near = difflib.get_close_matches(match.group(2), names, n=3, cutoff=0.5)
            if near:
                return f" Did you mean {_either(near)}?"
            return f" Valid values: {', '.join(names)}."
        return ""
    match = _EXPECTED_STRING.search(message)
    if match:
        word = match.group(1)
        if word in V1_TO_V2_TYPE:
            return (f" Layer types in `layer {{ }}` are quoted strings: type: "
                    f"\"{V1_TO_V2_TYPE[word]}\" (the bare {word} belongs to the deprecated "
                    "`layers { }` format).")
        return f" Strings must be quoted: \"{word}\"."
    if message.startswith('Expected "}"'):
        return " Is a `{` left unclosed?"
    return ""


def _field_hint(message_name, field_name):
    descriptor = _find_message(message_name)
    if descriptor is None:
        return ""
    names = [f.name for f in descriptor.fields]
    near = difflib.get_close_matches(field_name, names, n=3, cutoff=0.6)
    hint = ""
    if near:
        hint = f" Did you mean {_either(near)}?"
    if descriptor.full_name == "caffe.LayerParameter":
        if field_name in _V1_FIELD_HINTS:
            hint += f" `{field_name}` is a deprecated V1 field: {_V1_FIELD_HINTS[field_name]}."
        owners = _param_messages_with_field(field_name)
        if owners:
            hint += (f" `{field_name}` belongs inside {_either(owners, 'or')} "
                     f"(e.g. `{owners[0]} {{ {field_name}: ... }}`).")
    if not near and len(names) <= 15 and not hint:
        hint = f" Valid fields: {', '.join(names)}."
    return hint


def _param_messages_with_field(field_name):
    """The LayerParameter `*_param` fields whose message has a field `field_name`."""
    owners = []
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None \
                and field_name in field.message_type.fields_by_name:
            owners.append(field.name)
    return owners


def _either(names, word="or"):
    quoted = [f'"{n}"' if not n.endswith("_param") else n for n in names]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f" {word} " + quoted[-1]


def _find_message(full_name):
    try:
        return _POOL.FindMessageTypeByName(full_name)
    except KeyError:
        return None


def _find_enum(full_name):
    try:
        return _POOL.FindEnumTypeByName(full_name)
    except KeyError:
        return None


# ----------------------------------------------------------- upgrade tools

def upgrade_net_file(source, destination, binary=False):
    """Caffe's upgrade_net_proto_text/_binary: read, upgrade if needed, always write.

    Returns False when some old field had no place in the new format (Caffe's tools
    then exit with status 1).  A file that does not parse raises PrototxtError with
    exit status 2, as Caffe's tools return.
    """
    from .upgrade import net_needs_upgrade

    source = os.fspath(source)
    net = caffe_pb2.NetParameter()
    try:
        if binary:
            read_binary_proto(source, net)
        else:
            read_text_proto(source, net)
    except PrototxtError as exc:
        exc.exit_code = 2
        raise
    compatible = True
    if net_needs_upgrade(net):
        compatible = upgrade_net(net, source).compatible
        if not compatible:
            log.error("Encountered error(s) while upgrading prototxt; see details above.")
    else:
        log.error("File already in latest proto format: %s", source)
    if binary:
        write_binary(net, destination)
        log.info("Wrote upgraded NetParameter binary proto to %s", destination)
    else:
        write_text(net, destination)
        log.info("Wrote upgraded NetParameter text proto to %s", destination)
    return compatible
