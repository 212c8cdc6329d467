"""The local model zoo: model folders, their front matter, checksums, download, publish, serve.

A zoo is a directory (or the same directory served over HTTP) holding one folder per model,
laid out as Caffe's ``models/``::

    ZOO/index.json                  what `publish` wrote: every model's files, sizes, checksums
    ZOO/<name>/readme.md            Caffe's front matter (name, caffemodel, caffemodel_url,
                                    license, sha1) plus sha256, then free text
    ZOO/<name>/deploy.prototxt      and any other prototxt or small file of the model
    ZOO/<name>/<caffemodel>         the weights, when the zoo publishes them

A plain directory needs no ``index.json`` (folders with a ``readme.md`` are found by
looking); a zoo reached over HTTP does (``serve`` generates one on the fly when the folder
has none).  Every file a download writes is fetched into ``<file>.part`` (resumed with an
HTTP Range request, or a seek for local sources, when a previous try was cut off), checked
against the sha1/sha256 the zoo gives, and only then renamed into place.  Every name that
comes from a zoo -- model names, file paths, archive members, link targets -- must stay
inside the destination; anything else is refused before a byte is written.
"""

import contextlib
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from functools import partial

from .atomic import atomic_write
from .errors import NetdefError, UsageError

INDEX = "index.json"
README = "readme.md"
FORMAT = 1
CHUNK = 1 << 16
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
# Front-matter keys Caffe's readme files use, in their usual order.
FRONT_MATTER_KEYS = ("name", "caffemodel", "caffemodel_url", "license", "sha1", "sha256")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ZooError(NetdefError):
    """A zoo that cannot be read, a model it does not have, a refused path."""


class ChecksumError(ZooError):
    """A downloaded file whose sha1/sha256 is not the published one."""


class UnsafePathError(ZooError):
    """A path from a zoo or an archive that would land outside the destination."""


# ----------------------------------------------------------------------------- front matter
def parse_front_matter(text):
    """(dict, body) from a readme that starts with ``---`` / ``key: value`` lines / ``---``.

    Only the flat ``key: value`` form Caffe's model readmes use is understood; quotes
    around a value are dropped, an empty value is ''.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    meta = {}
    for i in range(1, len(lines)):
        line = lines[i].strip()
        if line == "---":
            return meta, "".join(lines[i + 1:])
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        meta[key.strip()] = value
    return {}, text  # no closing line: not front matter


def format_front_matter(meta, body):
    """The readme text for ``meta`` (known keys first, in Caffe's order) and ``body``."""
    keys = [k for k in FRONT_MATTER_KEYS if k in meta] + \
        [k for k in meta if k not in FRONT_MATTER_KEYS]
    head = "".join(f"{k}: {_yaml_scalar(meta[k])}".rstrip() + "\n" for k in keys)
    return f"---\n{head}---\n{body}"


def _yaml_scalar(value):
    value = "" if value is None else str(value)
    if value and (value[0] in "'\"[{&*!|>%@`#" or ": " in value or value != value.strip()):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def read_readme(model_dir):
    path = os.path.join(model_dir, README)
    try:
        with open(path, encoding="utf-8") as f:
            return parse_front_matter(f.read())
    except FileNotFoundError:
        raise ZooError(f"{model_dir}: no {README} (a zoo model folder needs one, with Caffe's "
                       "front matter: name, caffemodel, caffemodel_url, license, sha1)") from None


# ----------------------------------------------------------------------------- checksums
def file_digests(path):
    """{'size', 'sha1', 'sha256'} of a file, read once."""
    sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK * 16), b""):
            sha1.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {"size": size, "sha1": sha1.hexdigest(), "sha256": sha256.hexdigest()}


def verify_digests(label, expected, actual):
    """Raise ChecksumError naming the first algorithm whose published value differs."""
    for algo in ("sha1", "sha256"):
        want = (expected.get(algo) or "").strip().lower()
        if want and want != actual[algo]:
            raise ChecksumError(f"{label}: {algo} checksum mismatch (expected {want}, got "
                                f"{actual[algo]})")


# ----------------------------------------------------------------------------- path safety
def check_name(name, what="model name"):
    """A single, plain path component: no separators, no '..', nothing hidden."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UnsafePathError(f"refusing {what} {name!r}: use letters, digits, '.', '_', '-' "
                              "and '+' only (no path separators, no '..')")
    return name


def safe_path(root, relpath):
    """``root``/``relpath``, refused when it would resolve outside ``root``.

    Refused: absolute paths, drive letters, backslashes, empty/'.'/'..' components, and
    paths that pass through an existing link (or are one) pointing outside ``root``.
    """
    rel = str(relpath)
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or \
            re.match(r"^[A-Za-z]:", rel) or "\\" in rel or "\x00" in rel:
        raise UnsafePathError(f"refusing path {rel!r}: absolute or not a plain relative path "
                              f"(it would be written outside {root})")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"refusing path {rel!r}: '..' or empty components would leave "
                              f"{root}")
    root_real = os.path.realpath(root)
    target = os.path.join(root_real, *parts)
    real = os.path.realpath(target)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise UnsafePathError(f"refusing path {rel!r}: it resolves to {real}, outside {root} "
                              "(through a link)")
    return target


def _check_not_link_out(root, path):
    """A destination folder that is itself a link pointing elsewhere is refused."""
    real = os.path.realpath(path)
    root_real = os.path.realpath(root)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise UnsafePathError(f"refusing to write into {path}: it is a link to {real}, outside "
                              f"{root}")


def safe_extract(archive, dest):
    """Extract a tar or zip archive into ``dest``; refuse it whole if any member would leave.

    Members are checked before anything is written: absolute names, '..', links whose
    target resolves outside ``dest``, device files and FIFOs are refused.
    """
    os.makedirs(dest, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest)
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as exc:
        raise ZooError(f"{archive}: not a tar or zip archive ({exc})") from None
    with tf:
        members = tf.getmembers()
        for m in members:
            target = safe_path(dest, m.name.rstrip("/"))
            if m.issym() or m.islnk():
                link = m.linkname
                base = os.path.dirname(target) if m.issym() else os.path.realpath(dest)
                resolved = os.path.realpath(os.path.join(base, link))
                root = os.path.realpath(dest)
                if os.path.isabs(link) or not (resolved == root or
                                               resolved.startswith(root + os.sep)):
                    raise UnsafePathError(f"{archive}: refusing member {m.name!r}: a link to "
                                          f"{link!r}, outside {dest}")
            elif not (m.isfile() or m.isdir()):
                raise UnsafePathError(f"{archive}: refusing member {m.name!r}: not a regular "
                                      "file or folder")
        written = []
        for m in members:
            target = safe_path(dest, m.name.rstrip("/"))
            if m.isdir():
                os.makedirs(target, exist_ok=True)
            elif m.issym():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
                os.symlink(m.linkname, target)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tf.extractfile(m if m.isfile() else tf.getmember(m.linkname))
                with source, atomic_write(target) as out:
                    shutil.copyfileobj(source, out, CHUNK)
                written.append(target)
        return written


def _extract_zip(archive, dest):
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            safe_path(dest, info.filename.rstrip("/"))
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafePathError(f"{archive}: refusing member {info.filename!r}: links "
                                      "in zip archives are not extracted")
        written = []
        for info in infos:
            target = safe_path(dest, info.filename.rstrip("/"))
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(info) as source, atomic_write(target) as out:
                shutil.copyfileobj(source, out, CHUNK)
            written.append(target)
        return written


def is_archive(name):
    return str(name).lower().endswith(ARCHIVE_SUFFIXES)


# ----------------------------------------------------------------------------- locations
def default_zoo():
    """The checkout's ``models/`` folder when there is one, else ``~/.netdef/zoo``."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shipped = os.path.join(here, "models")
    if os.path.isdir(shipped):
        return shipped
    return os.path.join(os.path.expanduser("~"), ".netdef", "zoo")


def resolve_zoo(zoo=None):
    """--zoo, else $NETDEF_ZOO, else the default local directory."""
    return zoo or os.environ.get("NETDEF_ZOO") or default_zoo()


def is_url(location):
    return urllib.parse.urlsplit(str(location)).scheme in ("http", "https")


def local_path(location):
    """A file:// URL or a plain path as a local path (None for http/https)."""
    location = str(location)
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return urllib.request.url2pathname(parts.path)
    if parts.scheme in ("http", "https"):
        return None
    return location


def join_location(base, relpath):
    """``relpath`` (slash-separated) under a zoo root given as a path or a URL."""
    path = local_path(base)
    if path is not None:
        return os.path.join(path, *relpath.split("/"))
    quoted = "/".join(urllib.parse.quote(p) for p in relpath.split("/"))
    return str(base).rstrip("/") + "/" + quoted


# ----------------------------------------------------------------------------- transfers
class _Source:
    """Bytes from a local file or an http(s) URL, from an offset where it can."""

    def __init__(self, location):
        self.location = str(location)
        self.path = local_path(location)

    def open(self, offset):
        """(stream, start, total): ``start`` is where the stream begins (0 or ``offset``)."""
        if self.path is not None:
            return self._open_local(offset)
        return self._open_http(offset)

    def _open_local(self, offset):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            raise ZooError(f"{self.path}: no such file in the zoo") from None
        except OSError as exc:
            raise ZooError(f"{self.path}: cannot read ({exc.strerror})") from None
        total = os.fstat(f.fileno()).st_size
        start = offset if 0 < offset <= total else 0
        f.seek(start)
        return f, start, total

    def _open_http(self, offset):
        headers = {"User-Agent": "netdef-zoo"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(self.location, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                total = _content_range_total(exc.headers.get("Content-Range"))
                exc.close()
                if total == offset:  # the partial file is already whole
                    return io.BytesIO(b""), offset, total
                return self._open_http(0)
            raise ZooError(f"{self.location}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ZooError(f"cannot reach {self.location}: {reason}") from None
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            return response, start, total
        length = response.headers.get("Content-Length")
        return response, 0, int(length) if length and length.isdigit() else None

    def read_bytes(self):
        stream, _, _ = self.open(0)
        with stream:
            return stream.read()


def _parse_content_range(value):
    m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", value or "")
    if not m:
        raise ZooError(f"server sent a partial answer without a usable Content-Range ({value!r})")
    return int(m.group(1)), int(m.group(3)) if m.group(3) != "*" else None


def _content_range_total(value):
    m = re.match(r"bytes \*/(\d+)", value or "")
    return int(m.group(1)) if m else None


def _open_for_append(path, fresh):
    """Open ``path`` to write without following a link planted there."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else os.O_APPEND)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise UnsafePathError(f"refusing to write {path}: {exc.strerror} (is it a link?)") \
            from None
    return os.fdopen(fd, "wb")


def _progress(total, initial, label, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=label, file=sys.stderr, disable=not enabled, miniters=1, mininterval=0.2,
                dynamic_ncols=True, leave=True)


def fetch(location, target, expected=None, progress=True, label=None, log=None):
    """Copy ``location`` (path, file:// or http(s) URL) to ``target``, resuming and verifying.

    Bytes go to ``target + '.part'``; a part left by an interrupted try is continued
    (Range request / seek).  When ``expected`` gives ``size``, ``sha1``, ``sha256``, the
    result must match: a wrong checksum deletes the part and raises ChecksumError; a short
    transfer keeps it (run again to resume).  Returns the file's digests.
    """
    expected = expected or {}
    label = label or os.path.basename(target)
    log = log or _stderr
    source = _Source(location)
    if source.path is not None and os.path.exists(target) and os.path.exists(source.path) \
            and os.path.samefile(source.path, target):
        digests = file_digests(target)
        verify_digests(label, expected, digests)
        return digests
    part = target + ".part"
    if os.path.islink(part) or os.path.islink(target):
        raise UnsafePathError(f"refusing to write {target}: a link is in the way")
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    size = expected.get("size")
    if size is not None and offset > size:
        offset = 0
    stream, start, total = source.open(offset)
    if start != offset:
        if offset:
            log(f"{label}: the source does not resume; starting again from byte 0")
        offset = 0
    elif offset:
        log(f"{label}: resuming at byte {offset:,}")
    if total is None:
        total = size
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    if offset:
        with open(part, "rb") as done:
            for chunk in iter(lambda: done.read(CHUNK * 16), b""):
                sha1.update(chunk)
                sha256.update(chunk)
    written = offset
    try:
        with stream, _open_for_append(part, fresh=offset == 0) as out, \
                _progress(total, offset, label, progress) as bar:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                sha1.update(chunk)
                sha256.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ZooError(f"{label}: download interrupted after {written:,} bytes ({exc}); run "
                       "the same command again to resume") from None
    if total is not None and written != total:
        raise ZooError(f"{label}: download interrupted after {written:,} of {total:,} bytes; "
                       f"run the same command again to resume ({part} is kept)")
    digests = {"size": written, "sha1": sha1.hexdigest(), "sha256": sha256.hexdigest()}
    try:
        verify_digests(label, expected, digests)
    except ChecksumError as exc:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise ChecksumError(f"{exc}. The downloaded file was deleted ({part}); the zoo's copy "
                            "is damaged or was changed after publishing.") from None
    if size is not None and written != size:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise ChecksumError(f"{label}: size mismatch (expected {size:,} bytes, got "
                            f"{written:,}); the downloaded file was deleted ({part})")
    os.replace(part, target)
    _fsync_dir(os.path.dirname(os.path.abspath(target)))
    return digests


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the zoo
class Zoo:
    """A zoo at a local directory or an http(s)/file URL."""

    def __init__(self, location=None):
        self.location = str(resolve_zoo(location))
        self.path = local_path(self.location)
        self._index = None

    def __repr__(self):
        return f"Zoo({self.location!r})"

    # -- reading ---------------------------------------------------------------
    def index(self):
        """{'format': 1, 'models': {name: entry}} -- from index.json, or found by looking."""
        if self._index is None:
            self._index = self._read_index()
        return self._index

    def _read_index(self):
        if self.path is not None:
            if not os.path.isdir(self.path):
                raise ZooError(f"zoo {self.path} does not exist (give --zoo DIR or URL, or set "
                               "NETDEF_ZOO)")
            index = scan_directory(self.path, checksums=False)
            stored = os.path.join(self.path, INDEX)
            if os.path.exists(stored):
                with open(stored, encoding="utf-8") as f:
                    index["models"].update(_parse_index(f.read(), stored)["models"])
            return index
        url = join_location(self.location, INDEX)
        try:
            data = _Source(url).read_bytes()
        except ZooError as exc:
            raise ZooError(f"zoo {self.location}: cannot read its {INDEX} ({exc}); is this a "
                           "netdef zoo (`netdef zoo serve DIR`)?") from None
        return _parse_index(data, url)

    def names(self):
        return sorted(self.index()["models"])

    def entry(self, name):
        check_name(name)
        models = self.index()["models"]
        if name not in models:
            known = ", ".join(sorted(models)) or "none"
            raise ZooError(f"zoo {self.location} has no model {name!r} (it has: {known})")
        return models[name]

    def location_of(self, name, relpath):
        return join_location(self.location, f"{name}/{relpath}")

    def readme(self, name):
        entry = self.entry(name)
        if not any(f["path"] == README for f in entry["files"]):
            return {}, ""
        data = _Source(self.location_of(name, README)).read_bytes()
        return parse_front_matter(data.decode("utf-8", "replace"))


def _parse_index(data, where):
    try:
        index = json.loads(data)
        models = index["models"]
        for name, entry in models.items():
            check_name(name)
            for f in entry["files"]:
                f["path"], f["size"] = str(f["path"]), int(f["size"])
    except UnsafePathError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"{where}: not a zoo index ({exc})") from None
    return {"format": index.get("format", FORMAT), "models": models}


def weights_file(entry):
    """The index entry of the model's weights file, or None."""
    name = entry.get("caffemodel")
    for f in entry["files"]:
        if f["path"] == name:
            return f
    return None


def scan_directory(root, checksums=True):
    """An index built by looking: every ``root/<name>/`` holding a readme.md."""
    models = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not _NAME.match(name) or ".." in name or not os.path.isdir(folder) or \
                os.path.islink(folder) or not os.path.isfile(os.path.join(folder, README)):
            continue
        models[name] = describe_model(folder, checksums=checksums)
    return {"format": FORMAT, "models": models}


def describe_model(folder, checksums=True):
    """The index entry for one model folder (its regular top-level files)."""
    meta, _ = read_readme(folder)
    files = []
    for fname in sorted(os.listdir(folder)):
        path = os.path.join(folder, fname)
        if fname.startswith(".") or fname.endswith(".part") or os.path.islink(path) or \
                not os.path.isfile(path) or not _NAME.match(fname):
            continue
        item = {"path": fname, "size": os.path.getsize(path)}
        if checksums:
            digests = file_digests(path)
            item["sha256"] = digests["sha256"]
            if fname == meta.get("caffemodel"):
                item["sha1"] = digests["sha1"]
        elif fname == meta.get("caffemodel"):
            item.update({k: meta[k] for k in ("sha1", "sha256") if meta.get(k)})
        files.append(item)
    return {"title": meta.get("name", ""), "caffemodel": meta.get("caffemodel", ""),
            "caffemodel_url": meta.get("caffemodel_url", ""),
            "license": meta.get("license", ""), "files": files}


# ----------------------------------------------------------------------------- download
def download(name, zoo=None, dest="models", progress=True, log=None):
    """Fetch model ``name`` from ``zoo`` into ``dest/<name>/``; return that folder.

    The zoo's files are verified against its index (sha256, and sha1 for the weights).
    When the zoo holds no weights but the readme names a ``caffemodel_url``, the weights
    come from there and are checked against the readme's sha1/sha256 (an archive is
    unpacked safely).
    """
    log = log or _stderr
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    entry = zoo.entry(name)
    os.makedirs(dest, exist_ok=True)
    folder = safe_path(dest, check_name(name))
    _check_not_link_out(dest, folder)
    os.makedirs(folder, exist_ok=True)
    for item in entry["files"]:
        target = safe_path(folder, item["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        expected = {k: item[k] for k in ("size", "sha1", "sha256") if item.get(k)}
        expected["size"] = item["size"]
        if _already_there(target, expected):
            log(f"{name}/{item['path']}: already there, checksum OK")
            continue
        digests = fetch(zoo.location_of(name, item["path"]), target, expected,
                        progress=progress, label=f"{name}/{item['path']}", log=log)
        log(_verified_line(f"{name}/{item['path']}", expected, digests))
    if weights_file(entry) is None:
        meta, _ = read_readme(folder) if os.path.exists(os.path.join(folder, README)) else ({}, "")
        if meta.get("caffemodel_url"):
            fetch_weights(folder, meta, progress=progress, log=log,
                          base=zoo.location_of(name, ""))
        elif meta.get("caffemodel"):
            log(f"{name}: the zoo publishes no weights for this model (no caffemodel_url)")
    return folder


def _already_there(target, expected):
    if not os.path.isfile(target) or os.path.islink(target):
        return False
    if not (expected.get("sha256") or expected.get("sha1")):
        return False
    if os.path.getsize(target) != expected.get("size", os.path.getsize(target)):
        return False
    digests = file_digests(target)
    return all(not expected.get(a) or expected[a].lower() == digests[a]
               for a in ("sha1", "sha256"))


def _verified_line(label, expected, digests):
    checked = [a for a in ("sha1", "sha256") if expected.get(a)]
    if not checked:
        return f"{label}: {digests['size']:,} bytes (no checksum published: not verified)"
    return f"{label}: {digests['size']:,} bytes, " + \
        ", ".join(f"{a} OK" for a in checked) + " (verified)"


def fetch_weights(model_dir, meta=None, progress=True, log=None, base=None):
    """Caffe's download_model_binary: fetch ``caffemodel_url`` into the model folder.

    Skips the download when the file is there with the published checksum; an archive
    URL is downloaded, verified and unpacked into the folder.  Returns the weights path.
    """
    log = log or _stderr
    if meta is None:
        meta, _ = read_readme(model_dir)
    missing = [k for k in ("caffemodel", "caffemodel_url") if not meta.get(k)]
    if missing:
        raise ZooError(f"{model_dir}/{README}: the front matter lacks "
                       f"{' and '.join(missing)}; nothing to download")
    fname = meta["caffemodel"]
    target = safe_path(model_dir, fname)
    url = meta["caffemodel_url"]
    if base is not None and not is_url(url) and not url.startswith("file:") and \
            not os.path.isabs(url):
        url = str(base).rstrip("/\\") + ("/" if is_url(base) else os.sep) + url
    expected = {k: meta[k] for k in ("sha1", "sha256") if meta.get(k)}
    if not expected:
        log(f"{fname}: the readme publishes no sha1/sha256; the download cannot be verified")
    if is_archive(urllib.parse.urlsplit(url).path):
        archive = safe_path(model_dir, os.path.basename(urllib.parse.urlsplit(url).path))
        digests = fetch(url, archive, expected, progress=progress, log=log)
        log(_verified_line(os.path.basename(archive), expected, digests))
        safe_extract(archive, model_dir)
        os.unlink(archive)
        if not os.path.exists(target):
            raise ZooError(f"{url}: the archive holds no {fname!r}")
        return target
    if expected and os.path.isfile(target) and \
            _already_there(target, {**expected, "size": os.path.getsize(target)}):
        log(f"{fname}: model already exists, checksum OK")
        return target
    digests = fetch(url, target, expected, progress=progress, log=log)
    log(_verified_line(fname, expected, digests))
    return target


# ----------------------------------------------------------------------------- publish
def publish(model_dir, weights, zoo=None, name=None, log=None):
    """Add ``model_dir`` with ``weights`` to the local zoo; return the new index entry.

    The folder's top-level regular files (readme.md required; other caffemodels and
    solver states left out) and the weights are copied to ``zoo/<name>/``; the copied
    readme gets the weights' file name, sha1 and sha256; ``zoo/index.json`` gains the entry.
    """
    log = log or _stderr
    root = local_path(resolve_zoo(zoo))
    if root is None:
        raise UsageError(f"cannot publish to {zoo}: give a local zoo directory (serve it with "
                         "`netdef zoo serve DIR`)")
    name = check_name(name or os.path.basename(os.path.normpath(model_dir)))
    meta, body = read_readme(model_dir)
    if not os.path.isfile(weights):
        raise ZooError(f"weights file {weights} does not exist")
    fname = check_name(meta.get("caffemodel") or os.path.basename(weights), "caffemodel name")
    os.makedirs(root, exist_ok=True)
    folder = safe_path(root, name)
    _check_not_link_out(root, folder)
    os.makedirs(folder, exist_ok=True)
    in_place = os.path.samefile(folder, model_dir)
    for other in [] if in_place else os.listdir(folder):  # a re-publish replaces the files
        path = os.path.join(folder, other)
        if os.path.isfile(path) or os.path.islink(path):
            os.unlink(path)
    for fname_in in [] if in_place else sorted(os.listdir(model_dir)):
        src = os.path.join(model_dir, fname_in)
        if fname_in in (README, fname) or fname_in.startswith(".") or \
                not os.path.isfile(src) or not _NAME.match(fname_in) or \
                fname_in.endswith((".caffemodel", ".caffemodel.h5", ".solverstate",
                                   ".solverstate.h5", ".part")):
            continue
        _copy_atomic(src, safe_path(folder, fname_in))
    digests = _copy_atomic(weights, safe_path(folder, fname))
    meta = dict(meta)
    meta.setdefault("name", name)
    meta.update(caffemodel=fname, sha1=digests["sha1"], sha256=digests["sha256"])
    meta.setdefault("caffemodel_url", "")
    with atomic_write(safe_path(folder, README), "w") as f:
        f.write(format_front_matter(meta, body))
    entry = describe_model(folder, checksums=True)
    _update_index(root, name, entry)
    log(f"published {name} to {root}: {fname} {digests['size']:,} bytes, "
        f"sha1 {digests['sha1']}, sha256 {digests['sha256']}")
    return entry


def _copy_atomic(src, dst):
    sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
    with open(src, "rb") as f, atomic_write(dst) as out:
        for chunk in iter(lambda: f.read(CHUNK * 16), b""):
            out.write(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {"size": size, "sha1": sha1.hexdigest(), "sha256": sha256.hexdigest()}


def _update_index(root, name, entry):
    path = os.path.join(root, INDEX)
    index = {"format": FORMAT, "models": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            index = _parse_index(f.read(), path)
    index["models"][name] = entry
    index["models"] = dict(sorted(index["models"].items()))
    with atomic_write(path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------- serve
class ZooRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Read-only file serving with HTTP Range, confined to the zoo directory.

    GET and HEAD only (anything else is answered 501 by the base class); files reached
    through links pointing outside the directory are not served; ``/index.json`` is
    generated (with checksums) when the directory has none.
    """

    server_version = "netdef-zoo/1"

    def send_head(self):
        self._remaining = None
        root = os.path.realpath(self.directory)
        path = self.translate_path(self.path)
        real = os.path.realpath(path)
        if real != root and not real.startswith(root + os.sep):
            self.send_error(404, "File not found")
            return None
        if os.path.isdir(path):
            return super().send_head()
        url_path = urllib.parse.urlsplit(self.path).path
        if url_path == "/" + INDEX and not os.path.exists(path):
            data = json.dumps(scan_directory(root), indent=1, sort_keys=True).encode()
            return self._send_body(io.BytesIO(data), len(data), "application/json")
        try:
            f = open(real, "rb")
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        return self._send_body(f, size, self.guess_type(path))

    def _send_body(self, f, size, ctype):
        start, end = 0, size - 1
        wanted = self.headers.get("Range")
        span = _parse_range(wanted, size) if wanted else None
        if span == "unsatisfiable":
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if span:
            start, end = span
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(max(end - start + 1, 0)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(start)
        self._remaining = max(end - start + 1, 0)
        return f

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


def _parse_range(value, size):
    """(start, end) for one ``bytes=`` range, 'unsatisfiable', or None to ignore it."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # a suffix: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def make_server(directory, host="127.0.0.1", port=8000, handler=ZooRequestHandler,
                quiet=False):
    """A threading HTTP server for ``directory`` (not started: call ``serve_forever``)."""
    if not os.path.isdir(directory):
        raise ZooError(f"cannot serve {directory}: not a directory")

    class Handler(handler):
        if quiet:
            def log_message(self, *args):
                pass

    server = http.server.ThreadingHTTPServer(
        (host, port), partial(Handler, directory=os.path.abspath(directory)))
    server.daemon_threads = True
    return server


def format_size(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
