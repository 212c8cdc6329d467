"""The model zoo: front matter, checksums, publish, serve, download (resume, verification,
atomic writes) and the refusal of every path that would land outside the destination."""

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile

import h5py
import numpy as np
import pytest

from netdef import zoo
from netdef.errors import NetdefError
from tests.shared import ROOT

LENET_DEPLOY = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")
README = """---
name: Tiny model
caffemodel: tiny.caffemodel
caffemodel_url:
license: BSD-2-Clause
sha1:
---

# Tiny

A model for tests.
"""


def netdef_cli(*args, cwd=None, timeout=300):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "netdef.tools.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def quiet(_message):
    pass


def make_model_dir(root, name="tiny", weights_bytes=b"", readme=README):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "readme.md").write_text(readme)
    (folder / "deploy.prototxt").write_text('name: "tiny"\n')
    weights = root / f"{name}-weights.bin"
    weights.write_bytes(weights_bytes or os.urandom(300_000))
    return folder, weights


@pytest.fixture
def published(tmp_path):
    """A zoo with one published model (300 kB of random 'weights')."""
    folder, weights = make_model_dir(tmp_path / "src")
    root = tmp_path / "zoo"
    zoo.publish(str(folder), str(weights), zoo=str(root), log=quiet)
    return root, weights


@pytest.fixture
def server(published):
    """The published zoo served over HTTP on 127.0.0.1 (a free port), in a thread."""
    root, weights = published
    srv = zoo.make_server(str(root), port=0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", root, weights
    srv.shutdown()
    srv.server_close()


# ------------------------------------------------------------------------- front matter
def test_front_matter_round_trip():
    meta, body = zoo.parse_front_matter(README)
    assert meta == {"name": "Tiny model", "caffemodel": "tiny.caffemodel",
                    "caffemodel_url": "", "license": "BSD-2-Clause", "sha1": ""}
    assert body.startswith("\n# Tiny")
    again = zoo.parse_front_matter(zoo.format_front_matter(meta, body))
    assert again == (meta, body)


def test_front_matter_quotes_and_missing():
    meta, _ = zoo.parse_front_matter('---\nname: "A: B"\nurl: \'x\'\n---\ntext')
    assert meta == {"name": "A: B", "url": "x"}
    assert zoo.parse_front_matter("no front matter") == ({}, "no front matter")
    text = zoo.format_front_matter({"name": "A: B"}, "")
    assert zoo.parse_front_matter(text)[0] == {"name": "A: B"}


def test_the_repository_zoo_lists_its_models():
    z = zoo.Zoo(os.path.join(ROOT, "models"))
    assert "lenet" in z.names()
    assert any(f["path"] == "deploy.prototxt" for f in z.entry("lenet")["files"])


# ------------------------------------------------------------------------- publish
def test_publish_writes_checksums_and_index(published):
    root, weights = published
    digests = zoo.file_digests(str(weights))
    meta, _ = zoo.read_readme(str(root / "tiny"))
    assert meta["caffemodel"] == "tiny.caffemodel"
    assert (meta["sha1"], meta["sha256"]) == (digests["sha1"], digests["sha256"])
    assert (root / "tiny" / "tiny.caffemodel").read_bytes() == weights.read_bytes()
    index = json.loads((root / "index.json").read_text())
    files = {f["path"]: f for f in index["models"]["tiny"]["files"]}
    assert set(files) == {"deploy.prototxt", "readme.md", "tiny.caffemodel"}
    assert files["tiny.caffemodel"]["sha1"] == digests["sha1"]
    assert files["tiny.caffemodel"]["size"] == digests["size"]
    for f in files.values():
        assert f["sha256"] == zoo.file_digests(str(root / "tiny" / f["path"]))["sha256"]
    assert not [p for p in os.listdir(root / "tiny") if p.endswith(".tmp")]


def test_publish_in_place_keeps_the_model_folder(tmp_path):
    root = tmp_path / "zoo"
    folder, weights = make_model_dir(root)
    zoo.publish(str(folder), str(weights), zoo=str(root), log=quiet)
    assert sorted(os.listdir(folder)) == ["deploy.prototxt", "readme.md", "tiny.caffemodel"]
    assert zoo.read_readme(str(folder))[0]["sha256"] == zoo.file_digests(str(weights))["sha256"]
    assert zoo.Zoo(str(root)).entry("tiny")["caffemodel"] == "tiny.caffemodel"


def test_publish_needs_a_readme_and_a_local_zoo(tmp_path):
    (tmp_path / "m").mkdir()
    w = tmp_path / "w.caffemodel"
    w.write_bytes(b"x")
    with pytest.raises(zoo.ZooError, match="readme.md"):
        zoo.publish(str(tmp_path / "m"), str(w), zoo=str(tmp_path / "z"), log=quiet)
    with pytest.raises(NetdefError, match="local zoo directory"):
        zoo.publish(str(tmp_path / "m"), str(w), zoo="http://127.0.0.1:1/", log=quiet)


# ------------------------------------------------------------------------- download
def test_download_from_a_plain_directory_and_file_url(published, tmp_path):
    root, weights = published
    for location, dest in ((str(root), tmp_path / "a"), (root.as_uri(), tmp_path / "b")):
        folder = zoo.download("tiny", zoo=location, dest=str(dest), progress=False, log=quiet)
        assert open(os.path.join(folder, "tiny.caffemodel"), "rb").read() == \
            weights.read_bytes()
        assert not [p for p in os.listdir(folder) if p.endswith((".part", ".tmp"))]


def test_download_over_http_verifies_and_skips_what_is_there(server, tmp_path):
    url, _, weights = server
    lines = []
    folder = zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False,
                          log=lines.append)
    assert open(os.path.join(folder, "tiny.caffemodel"), "rb").read() == weights.read_bytes()
    assert any("tiny.caffemodel" in m and "sha1 OK, sha256 OK" in m for m in lines), lines
    lines.clear()
    zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=lines.append)
    assert all("already there, checksum OK" in m for m in lines), lines


def test_corrupted_zoo_file_fails_the_checksum_and_leaves_nothing(server, tmp_path):
    url, root, _ = server
    target = root / "tiny" / "tiny.caffemodel"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(zoo.ChecksumError) as err:
        zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=quiet)
    message = str(err.value)
    assert "checksum mismatch" in message and "was deleted" in message
    assert re.search(r"sha1 checksum mismatch \(expected [0-9a-f]{40}, got [0-9a-f]{40}\)",
                     message)
    left = os.listdir(tmp_path / "tiny")
    assert "tiny.caffemodel" not in left and "tiny.caffemodel.part" not in left


class _CutOnce(zoo.ZooRequestHandler):
    """Sends only the first 100,000 bytes of the first full answer for the weights."""

    cut = {"done": False}
    ranges = []

    def send_head(self):
        if self.path.endswith(".caffemodel"):
            _CutOnce.ranges.append(self.headers.get("Range"))
        return super().send_head()

    def copyfile(self, source, outputfile):
        if self.path.endswith(".caffemodel") and not _CutOnce.cut["done"]:
            _CutOnce.cut["done"] = True
            outputfile.write(source.read(100_000))
            self.close_connection = True
            return
        super().copyfile(source, outputfile)


def test_interrupted_download_resumes_with_a_range_request(published, tmp_path):
    root, weights = published
    _CutOnce.cut["done"] = False
    _CutOnce.ranges.clear()
    srv = zoo.make_server(str(root), port=0, handler=_CutOnce, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with pytest.raises(zoo.ZooError, match="interrupted after 100,000 of 300,000 bytes"):
            zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=quiet)
        part = tmp_path / "tiny" / "tiny.caffemodel.part"
        assert part.stat().st_size == 100_000
        assert not (tmp_path / "tiny" / "tiny.caffemodel").exists()
        lines = []
        zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=lines.append)
    finally:
        srv.shutdown()
        srv.server_close()
    assert _CutOnce.ranges == [None, "bytes=100000-"]
    assert any("resuming at byte 100,000" in m for m in lines), lines
    assert (tmp_path / "tiny" / "tiny.caffemodel").read_bytes() == weights.read_bytes()
    assert not part.exists()


def test_a_wrong_partial_file_is_caught_by_the_checksum(server, tmp_path):
    url, _, weights = server
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "tiny.caffemodel.part").write_bytes(b"\0" * 5000)
    with pytest.raises(zoo.ChecksumError, match="was deleted"):
        zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=quiet)
    assert not (tmp_path / "tiny" / "tiny.caffemodel.part").exists()
    zoo.download("tiny", zoo=url, dest=str(tmp_path), progress=False, log=quiet)
    assert (tmp_path / "tiny" / "tiny.caffemodel").read_bytes() == weights.read_bytes()


def test_unknown_model_and_unreachable_zoo(published, tmp_path):
    root, _ = published
    with pytest.raises(zoo.ZooError, match="has no model 'nope'.*tiny"):
        zoo.download("nope", zoo=str(root), dest=str(tmp_path), log=quiet)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(zoo.ZooError, match="index.json"):
        zoo.Zoo(f"http://127.0.0.1:{port}").names()


def test_weights_from_caffemodel_url_as_caffe_does(tmp_path):
    payload = os.urandom(50_000)
    source = tmp_path / "upstream.caffemodel"
    source.write_bytes(payload)
    digests = zoo.file_digests(str(source))
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    readme = README.replace("caffemodel_url:", f"caffemodel_url: {source.as_uri()}")
    (folder / "readme.md").write_text(readme.replace("sha1:", f"sha1: {digests['sha1']}"))
    path = zoo.fetch_weights(str(folder), progress=False, log=quiet)
    assert open(path, "rb").read() == payload
    lines = []
    zoo.fetch_weights(str(folder), progress=False, log=lines.append)
    assert any("already exists" in m for m in lines)
    bad = readme.replace("sha1:", "sha1: " + "0" * 40)
    (folder / "readme.md").write_text(bad)
    os.unlink(path)
    with pytest.raises(zoo.ChecksumError, match="sha1 checksum mismatch"):
        zoo.fetch_weights(str(folder), progress=False, log=quiet)
    assert not os.path.exists(path) and not os.path.exists(path + ".part")


def test_download_model_binary_command(tmp_path):
    source = tmp_path / "upstream.caffemodel"
    source.write_bytes(os.urandom(20_000))
    folder = tmp_path / "m"
    folder.mkdir()
    sha1 = zoo.file_digests(str(source))["sha1"]
    (folder / "readme.md").write_text(README.replace(
        "caffemodel_url:", f"caffemodel_url: {source}").replace("sha1:", f"sha1: {sha1}"))
    out = subprocess.run([sys.executable, "-m", "netdef.tools.download_model_binary",
                          str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (folder / "tiny.caffemodel").read_bytes() == source.read_bytes()
    assert "sha1 OK" in out.stderr
    (folder / "readme.md").write_text(README)
    out = netdef_cli("download_model_binary", str(folder))
    assert out.returncode == 1 and "lacks caffemodel_url" in out.stderr
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------------- path safety
@pytest.mark.parametrize("bad", ["/etc/passwd", "../evil", "a/../../evil", "a//b", "./x",
                                 "..", "C:/x", "a\\..\\b", ""])
def test_safe_path_refuses_what_would_leave(tmp_path, bad):
    with pytest.raises(zoo.UnsafePathError):
        zoo.safe_path(str(tmp_path), bad)


def test_safe_path_refuses_links_pointing_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "link")
    with pytest.raises(zoo.UnsafePathError, match="outside"):
        zoo.safe_path(str(dest), "link/file")
    (dest / "inside").mkdir()
    os.symlink(dest / "inside", dest / "ok")
    assert zoo.safe_path(str(dest), "ok/file").endswith("file")


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "x y", ""])
def test_model_names_must_be_plain(name):
    with pytest.raises(zoo.UnsafePathError):
        zoo.check_name(name)


def test_an_index_with_traversal_is_refused_before_writing(tmp_path):
    root = tmp_path / "zoo"
    (root / "evil").mkdir(parents=True)
    (root / "evil" / "readme.md").write_text(README)
    index = {"format": 1, "models": {"evil": {"caffemodel": "", "files": [
        {"path": "../../escaped.txt", "size": 4, "sha256": "0" * 64}]}}}
    (root / "index.json").write_text(json.dumps(index))
    dest = tmp_path / "dest"
    with pytest.raises(zoo.UnsafePathError, match="escaped.txt"):
        zoo.download("evil", zoo=str(root), dest=str(dest), progress=False, log=quiet)
    assert not (tmp_path / "escaped.txt").exists()
    index["models"] = {"../evil": {"files": []}}
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(zoo.UnsafePathError, match="model name"):
        zoo.Zoo(str(root)).names()


def test_a_destination_that_links_out_is_refused(published, tmp_path):
    root, _ = published
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "tiny")
    with pytest.raises(zoo.UnsafePathError, match="outside"):
        zoo.download("tiny", zoo=str(root), dest=str(dest), progress=False, log=quiet)
    assert os.listdir(outside) == []


def test_a_planted_link_at_the_target_is_refused(published, tmp_path):
    root, _ = published
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "dest" / "tiny").mkdir(parents=True)
    os.symlink(victim, tmp_path / "dest" / "tiny" / "tiny.caffemodel.part")
    with pytest.raises(zoo.UnsafePathError):
        zoo.download("tiny", zoo=str(root), dest=str(tmp_path / "dest"), progress=False,
                     log=quiet)
    assert victim.read_text() == "keep me"


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tf.addfile(info)
            else:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize("members", [
    [("ok.txt", "file", b"x"), ("../evil.txt", "file", b"x")],
    [("/tmp/evil-absolute.txt", "file", b"x")],
    [("link", "sym", "/etc")],
    [("link", "sym", "../../outside")],
    [("sub/link", "sym", "../../x")],
])
def test_archives_that_would_write_outside_are_refused(tmp_path, members):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, members)
    dest = tmp_path / "dest"
    with pytest.raises(zoo.UnsafePathError):
        zoo.safe_extract(str(archive), str(dest))
    assert not dest.exists() or os.listdir(dest) == []
    assert not (tmp_path / "evil.txt").exists()


def test_safe_archives_extract(tmp_path):
    archive = tmp_path / "a.tar.gz"
    _tar(archive, [("m/w.caffemodel", "file", b"weights"), ("m/alias", "sym", "w.caffemodel")])
    written = zoo.safe_extract(str(archive), str(tmp_path / "dest"))
    assert (tmp_path / "dest" / "m" / "w.caffemodel").read_bytes() == b"weights"
    assert os.readlink(tmp_path / "dest" / "m" / "alias") == "w.caffemodel"
    assert len(written) == 1
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(zoo.UnsafePathError):
        zoo.safe_extract(str(zpath), str(tmp_path / "zdest"))
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("good/w.caffemodel", "w")
    zoo.safe_extract(str(zpath), str(tmp_path / "zdest"))
    assert (tmp_path / "zdest" / "good" / "w.caffemodel").read_text() == "w"


def test_weights_url_pointing_to_an_archive_is_unpacked_safely(tmp_path):
    archive = tmp_path / "weights.tar.gz"
    _tar(archive, [("tiny.caffemodel", "file", b"the weights")])
    folder = tmp_path / "m"
    folder.mkdir()
    sha1 = zoo.file_digests(str(archive))["sha1"]
    (folder / "readme.md").write_text(README.replace(
        "caffemodel_url:", f"caffemodel_url: {archive.as_uri()}").replace("sha1:",
                                                                          f"sha1: {sha1}"))
    zoo.fetch_weights(str(folder), progress=False, log=quiet)
    assert (folder / "tiny.caffemodel").read_bytes() == b"the weights"
    assert not (folder / "weights.tar.gz").exists()


# ------------------------------------------------------------------------- serve
def test_server_answers_ranges_and_stays_inside(server, tmp_path):
    import urllib.error
    import urllib.request

    url, root, weights = server
    data = weights.read_bytes()
    req = urllib.request.Request(f"{url}/tiny/tiny.caffemodel", headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206 and r.read() == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    req = urllib.request.Request(f"{url}/tiny/tiny.caffemodel", headers={"Range": "bytes=-5"})
    with urllib.request.urlopen(req) as r:
        assert r.read() == data[-5:]
    req = urllib.request.Request(f"{url}/tiny/tiny.caffemodel",
                                 headers={"Range": f"bytes={len(data)}-"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 416
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, root / "tiny" / "leak.txt")
    for path in ("/tiny/leak.txt", "/../secret.txt", "/%2e%2e/secret.txt"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path)
        assert err.value.code == 404
    req = urllib.request.Request(f"{url}/tiny/readme.md", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 501


def test_serving_a_folder_without_index_generates_one(tmp_path):
    shutil.copytree(os.path.join(ROOT, "models", "lenet"), tmp_path / "lenet")
    srv = zoo.make_server(str(tmp_path), port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert zoo.Zoo(url).names() == ["lenet"]
        folder = zoo.download("lenet", zoo=url, dest=str(tmp_path / "d"), progress=False,
                              log=quiet)
    finally:
        srv.shutdown()
        srv.server_close()
    assert open(os.path.join(folder, "deploy.prototxt")).read() == \
        open(LENET_DEPLOY).read()


# ------------------------------------------------------------------------- end to end
def _train_lenet(tmp_path, iterations=4):
    """A LeNet trained for a few SGD steps on 32 random digits; returns the caffemodel."""
    import netdef
    from netdef import layers as L
    from netdef.net_spec import NetSpec
    from netdef.proto import caffe_pb2
    from netdef.solvers import Solver

    rng = np.random.default_rng(0)
    h5 = tmp_path / "digits.h5"
    with h5py.File(h5, "w") as f:
        f["data"] = rng.uniform(0, 1, (32, 1, 28, 28)).astype(np.float32)
        f["label"] = rng.integers(0, 10, 32).astype(np.float32)
    (tmp_path / "digits.txt").write_text(f"{h5}\n")
    n = NetSpec(name="LeNet")
    n.data, n.label = L.HDF5Data(source=str(tmp_path / "digits.txt"), batch_size=16, ntop=2)
    xavier = dict(weight_filler=dict(type="xavier"))
    n.conv1 = L.Convolution(n.data, num_output=20, kernel_size=5, **xavier)
    n.pool1 = L.Pooling(n.conv1, pool="MAX", kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=50, kernel_size=5, **xavier)
    n.pool2 = L.Pooling(n.conv2, pool="MAX", kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, **xavier)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, **xavier)
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    param = caffe_pb2.SolverParameter(base_lr=0.01, momentum=0.9, lr_policy="fixed",
                                      max_iter=iterations, random_seed=3)
    param.train_net_param.CopyFrom(n.to_proto())
    solver = Solver(param)
    solver.step(iterations)
    path = tmp_path / "lenet_trained.caffemodel"
    solver.net.save(str(path))
    assert netdef.Net(LENET_DEPLOY, netdef.TEST, weights=str(path))
    return path


def _start_server(directory):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "netdef.tools.main", "zoo", "serve",
                             str(directory), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"zoo serve did not start: {line!r}")
    return proc, m.group(0).rstrip("/")


@pytest.mark.slow
def test_publish_serve_download_and_run_a_trained_lenet(tmp_path):
    import netdef

    weights = _train_lenet(tmp_path)
    model_dir = tmp_path / "lenet"
    shutil.copytree(os.path.join(ROOT, "models", "lenet"), model_dir)
    zoo_dir = tmp_path / "zoo"
    out = netdef_cli("zoo", "publish", str(model_dir), "--weights", str(weights),
                     "--zoo", str(zoo_dir))
    assert out.returncode == 0, out.stderr
    proc, url = _start_server(zoo_dir)
    try:
        listed = netdef_cli("zoo", "list", "--zoo", url)
        assert listed.returncode == 0, listed.stderr
        assert re.search(r"^lenet\s+\S+ \S+\s+yes\s+zoo$", listed.stdout, re.M), listed.stdout
        info = netdef_cli("zoo", "info", "lenet", "--zoo", url)
        assert "sha256: " in info.stdout and "weights: in the zoo" in info.stdout
        fresh = tmp_path / "fresh"
        got = netdef_cli("zoo", "download", "lenet", "--zoo", url, "--dest", str(fresh))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert got.returncode == 0, got.stderr
    assert "B/s" in got.stderr and "100%" in got.stderr          # the progress bar
    caffemodel = "lenet_iter_10000.caffemodel"
    assert f"lenet/{caffemodel}: " in got.stderr and "sha1 OK, sha256 OK (verified)" in \
        got.stderr
    folder = fresh / "lenet"
    assert sorted(os.listdir(folder)) == sorted(["deploy.prototxt", "readme.md", caffemodel])
    x = np.random.default_rng(1).uniform(0, 1, (64, 1, 28, 28)).astype(np.float32)
    original = netdef.Net(LENET_DEPLOY, netdef.TEST, weights=str(weights))
    downloaded = netdef.Net(str(folder / "deploy.prototxt"), netdef.TEST,
                            weights=str(folder / caffemodel))
    want = original.forward(data=x)["prob"].copy()
    np.testing.assert_array_equal(downloaded.forward(data=x)["prob"], want)


@pytest.mark.slow
def test_cli_reports_a_corrupted_download_clearly(tmp_path, published):
    root, _ = published
    target = root / "tiny" / "tiny.caffemodel"
    target.write_bytes(b"x" + target.read_bytes()[1:])
    out = netdef_cli("zoo", "download", "tiny", "--zoo", str(root), "--dest",
                     str(tmp_path / "d"), "--no-progress")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert re.search(r"netdef: error: tiny/tiny\.caffemodel: sha1 checksum mismatch .*"
                     r"The downloaded file was deleted", out.stderr), out.stderr
    listed = netdef_cli("zoo", "list", "--zoo", str(root))
    assert re.search(r"^tiny\s+\S+ \S+\s+yes\s+zoo$", listed.stdout, re.M), listed.stdout
