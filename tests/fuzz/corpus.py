"""Seed files and case builders: each case is a mutated real file plus a real command.

A case is a dict: ``family``, ``files`` ({relative name: bytes, or a callable that
builds the file at a path}), ``argv`` (``{d}`` stands for the case's folder) and
``isolate`` (run in a subprocess: the families that could crash or hang a process).
"""

import random
from pathlib import Path

from .. import shared
from . import mutators as mut

DATA = Path(shared.DATA)
IO = Path(shared.CONFORMANCE) / "io"


def _read(path):
    return Path(path).read_bytes()


def available():
    """True when the real seed files are present (the fuzzer skips otherwise)."""
    return (IO / "tiny_net.prototxt").is_file() and (DATA / "prototxt").is_dir()


# -- seed text ---------------------------------------------------------------
def _tiny_net():
    return (IO / "tiny_net.prototxt").read_text()


def _small_deploy_nets():
    nets = [_tiny_net()]
    for rel in ("models/lenet_ethereon/deploy.prototxt",
                "models/cifar10_quick_everpeace/deploy.prototxt",
                "models/mtcnn_det1/deploy.prototxt"):
        if (DATA / rel).is_file():
            nets.append((DATA / rel).read_text())
    return nets


def _real_prototxts():
    return sorted(p for p in (DATA / "prototxt").rglob("*.prototxt"))


def _data_net(source, mean_file="mean.binaryproto", batch=2, crop=0, backend="LMDB"):
    crop_line = f"crop_size: {crop} " if crop else ""
    return (f'name: "d" layer {{ name: "data" type: "Data" top: "data" top: "label" '
            f'include {{ phase: TEST }} transform_param {{ {crop_line}'
            f'mean_file: "{mean_file}" }} data_param {{ source: "{source}" '
            f'batch_size: {batch} backend: {backend} }} }}\n')


TINY_SOLVER = ('net: "net.prototxt"\nbase_lr: 0.1\nmomentum: 0.9\nlr_policy: "fixed"\n'
               'max_iter: 2\nrandom_seed: 5\ndisplay: 1\nsnapshot_prefix: "snap"\n'
               'test_iter: 1\ntest_interval: 2\n')


def _text_bytes(text):
    return text.encode("utf-8", "surrogateescape")


# -- families ----------------------------------------------------------------
def net_text(rng):
    """A mutated small net, timed for one iteration (the whole build + forward/backward)."""
    text = mut.mutate_text(rng.choice(_small_deploy_nets()), rng)
    cmd = rng.choice([["time", "--model={d}/net.prototxt", "--iterations=1"],
                      ["test", "--model={d}/net.prototxt", "--iterations=1"],
                      ["summary", "{d}/net.prototxt"]])
    return {"files": {"net.prototxt": _text_bytes(text)}, "argv": cmd}


def real_prototxt(rng):
    """A mutated real prototxt (current, V1 and V0 formats) through the upgrade tools."""
    path = rng.choice(_real_prototxts())
    text = mut.mutate_text(path.read_text(errors="replace"), rng)
    tool = ("upgrade_solver_proto_text" if "solver" in path.name
            else "upgrade_net_proto_text")
    return {"files": {"in.prototxt": _text_bytes(text)},
            "argv": [tool, "{d}/in.prototxt", "{d}/out.prototxt"]}


def solver_text(rng):
    """A mutated tiny solver (or its net) trained for two iterations."""
    solver, net = TINY_SOLVER, _tiny_net()
    if rng.random() < 0.6:
        solver = mut.mutate_text(solver, rng)
    else:
        net = mut.mutate_text(net, rng)
    return {"files": {"solver.prototxt": _text_bytes(solver), "net.prototxt": _text_bytes(net)},
            "argv": ["train", "--solver={d}/solver.prototxt"], "chdir": True}


def _weights_candidates():
    c = [IO / "snap_iter_3.caffemodel", IO / "snap_iter_3.solverstate",
         IO / "mean_raw_resized.binaryproto", DATA / "ilsvrc12/imagenet_mean.binaryproto",
         DATA / "ilsvrc12/ilsvrc_2012_mean.npy", DATA / "images/cat.jpg",
         IO / "images/b.png", IO / "tiny_net.prototxt", IO / "tiny-labels-idx1-ubyte",
         IO / "lmdb_raw_resized/data.mdb",
         DATA / "models/lenet_ethereon/lenet_iter_10000.caffemodel",
         DATA / "models/cifar10_quick_everpeace/cifar10_quick_iter_5000.caffemodel"]
    return [p for p in c if p.is_file()]


def _h5_candidates():
    c = [IO / "snaph5_iter_3.caffemodel.h5", IO / "snaph5_iter_3.solverstate.h5",
         DATA / "test_data/sample_data.h5",
         DATA / "models/cifar10_quick_h5_bxuan694/cifar10_quick_iter_5000.caffemodel.h5"]
    return [p for p in c if p.is_file()]


def weights(rng):
    """A swapped or mutated file given as --weights to a net it may or may not fit."""
    src = rng.choice(_weights_candidates())
    data = _read(src)
    if rng.random() < 0.6:
        data = mut.mutate_bytes(data, rng)
    elif rng.random() < 0.2:
        data = b""
    model = rng.choice([IO / "tiny_net.prototxt", DATA / "models/lenet_ethereon/deploy.prototxt"])
    return {"files": {"net.prototxt": _read(model), "w.caffemodel": data},
            "argv": ["test", "--model={d}/net.prototxt", "--weights={d}/w.caffemodel",
                     "--iterations=1"]}


def weights_h5(rng):
    """HDF5 weights, mutated or swapped (subprocess: the HDF5 library is C)."""
    src = rng.choice(_h5_candidates())
    data = _read(src)
    if rng.random() < 0.7:
        data = mut.mutate_bytes(data, rng)
    return {"files": {"net.prototxt": _read(IO / "tiny_net.prototxt"), "w.caffemodel.h5": data},
            "argv": ["test", "--model={d}/net.prototxt", "--weights={d}/w.caffemodel.h5",
                     "--iterations=1"], "isolate": True}


def _copy_lmdb(name):
    return {f"db/{f}": _read(IO / name / f) for f in ("data.mdb", "lock.mdb")}


def _empty_lmdb(path):
    import lmdb
    lmdb.open(str(path), map_size=1 << 20).close()


def _junk_lmdb(values):
    def build(path):
        import lmdb
        env = lmdb.open(str(path), map_size=1 << 22)
        with env.begin(write=True) as txn:
            for i, v in enumerate(values):
                txn.put(f"{i:08d}".encode(), v)
        env.close()
    return build


def _mutated_datums(rng):
    """Real records from a conformance LMDB, each mutated as a byte string."""
    import lmdb
    env = lmdb.open(str(IO / rng.choice(["lmdb_raw_resized", "lmdb_encoded", "lmdb_mnist"])),
                    readonly=True, lock=False)
    with env.begin() as txn:
        values = [bytes(v) for _, v in txn.cursor()]
    env.close()
    i = rng.randrange(len(values))
    values[i] = rng.choice([mut.mutate_bytes(values[i], rng), b"", b"\x00" * 7,
                            b"not a datum at all", _read(IO / "images/b.png")])
    return values


def database(rng):
    """A broken LMDB under compute_image_mean or a Data layer (subprocess: mmap, C)."""
    kind = rng.choice(["truncate", "flip", "zero", "empty", "junk", "junk", "missing_data"])
    name = rng.choice(["lmdb_raw_resized", "lmdb_encoded", "lmdb_gray_resized", "lmdb_mnist"])
    files = _copy_lmdb(name)
    data = files["db/data.mdb"]
    if kind == "truncate":
        files["db/data.mdb"] = data[: rng.choice([0, 100, 4096, 8192, len(data) - 1])]
    elif kind == "flip":
        files["db/data.mdb"] = mut.flip_bits(data, rng)
    elif kind == "zero":
        files["db/data.mdb"] = mut.zero_block(data, rng)
    elif kind == "empty":
        files = {"db": _empty_lmdb}
    elif kind == "junk":
        files = {"db": _junk_lmdb(_mutated_datums(rng))}
    else:
        del files["db/data.mdb"]
    files["mean.binaryproto"] = _read(IO / "mean_raw_resized.binaryproto")
    files["net.prototxt"] = _data_net("{d}/db").encode()
    argv = rng.choice([["compute_image_mean", "{d}/db", "{d}/out.binaryproto"],
                       ["test", "--model={d}/net.prototxt", "--iterations=2"]])
    return {"files": files, "argv": argv, "isolate": True, "format_files": True}


def mean_file(rng):
    """A Data layer whose mean file is swapped, mutated or of the wrong shape."""
    src = rng.choice([IO / "mean_raw_resized.binaryproto",
                      DATA / "ilsvrc12/imagenet_mean.binaryproto",
                      DATA / "ilsvrc12/ilsvrc_2012_mean.npy", IO / "snap_iter_3.caffemodel",
                      IO / "images/a.jpg", IO / "tiny_net.prototxt"])
    data = _read(src)
    if rng.random() < 0.5:
        data = mut.mutate_bytes(data, rng)
    files = _copy_lmdb(rng.choice(["lmdb_raw_resized", "lmdb_gray_resized"]))
    files["mean.binaryproto"] = data
    files["net.prototxt"] = _data_net("{d}/db", "{d}/mean.binaryproto",
                                      crop=rng.choice([0, 0, 4, 20])).encode()
    return {"files": files, "argv": ["test", "--model={d}/net.prototxt", "--iterations=1"],
            "format_files": True}


def image_list(rng):
    """convert_imageset over a list with missing paths, bad labels or undecodable images."""
    files = {f"images/{p.name}": _read(p) for p in (IO / "images").iterdir()}
    lines = (IO / "list.txt").read_text().splitlines()
    for _ in range(rng.choice([1, 2, 3])):
        k = rng.choice(["missing", "label", "undecodable", "empty_line", "text", "truncate_img",
                        "nolabel", "huge_label"])
        i = rng.randrange(len(lines))
        if k == "missing":
            lines[i] = "nowhere.jpg 0"
        elif k == "label":
            lines[i] = lines[i].rsplit(" ", 1)[0] + " " + rng.choice(["x", "1.5", "-", "1e3"])
        elif k == "huge_label":
            lines[i] = lines[i].rsplit(" ", 1)[0] + " " + rng.choice(["2147483648", "-1",
                                                                      "99999999999999"])
        elif k in ("undecodable", "truncate_img"):
            key = f"images/{lines[i].rsplit(' ', 1)[0]}"
            if key in files:  # only real images; a mutated name could point anywhere
                files[key] = (b"\x89PNG\r\n\x1a\n garbage" if k == "undecodable"
                              else files[key][:200])
        elif k == "empty_line":
            lines.insert(i, "")
        elif k == "nolabel":
            lines[i] = lines[i].rsplit(" ", 1)[0]
        else:
            lines = mut.mutate_text("\n".join(lines), rng).splitlines() or [""]
    if rng.random() < 0.05:
        lines = []
    files["list.txt"] = _text_bytes("\n".join(lines) + "\n")
    flags = rng.choice([[], ["--resize_width=10", "--resize_height=8"], ["--encoded"],
                        ["--gray", "--check_size"], ["--encode_type=png"],
                        ["--resize_width=-3", "--resize_height=4"], ["--encode_type=bogus"]])
    return {"files": files,
            "argv": ["convert_imageset", "{d}/images/", "{d}/list.txt", "{d}/out_db", "--quiet",
                     *flags]}


COMMAND_FLAGS = [
    ["time", "--model={d}/net.prototxt", "--iterations=1"],
    ["test", "--model={d}/net.prototxt", "--iterations=1", "--weights={d}/w.caffemodel"],
    ["train", "--solver={d}/solver.prototxt"],
    ["compute_image_mean", "{d}/db", "{d}/mean_out.binaryproto"],
    ["convert_imageset", "{d}/images/", "{d}/list.txt", "{d}/out_db", "--quiet"],
    ["upgrade_net_proto_text", "{d}/net.prototxt", "{d}/up.prototxt"],
    ["summary", "{d}/net.prototxt", "--batch=2"],
]
FLAG_JUNK = ["--iterations", "--iterations=abc", "--iterations=-5", "--iterations=0",
             "--iterations=1e3", "--model", "--model=", "--model={d}", "--bogus", "-bogus=1",
             "--phase=TRIAN", "--level=x", "--stage=,,", "--weights=", "--weights={d}/nope",
             "--gpu=all", "--solver", "--solver={d}/net.prototxt", "--snapshot={d}/nope",
             "--backend=leveldb", "--backend=rocks", "-", "--", "--batch=0", "--batch=-1",
             "--resize_width=abc", "--format=xml", "--input-shape=1,x,3", "--input_shape=0,1,2,2",
             "--input_shape=nope=1,1,2,2", "-iterations", "2", "", "--debug=1"]


def flags(rng):
    """Real commands with dropped, unknown, repeated or mistyped flags."""
    argv = list(rng.choice(COMMAND_FLAGS))
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.choice(["add", "add", "drop", "dup"])
        if op == "add":
            argv.insert(rng.randrange(1, len(argv) + 1), rng.choice(FLAG_JUNK))
        elif op == "drop" and len(argv) > 1:
            del argv[rng.randrange(1, len(argv))]
        elif len(argv) > 1:
            argv.append(argv[rng.randrange(1, len(argv))])
    if rng.random() < 0.05:
        argv[0] = rng.choice(["trian", "", "-h", "device_query"])
    files = {"net.prototxt": _read(IO / "tiny_net.prototxt"),
             "solver.prototxt": TINY_SOLVER.encode(),
             "w.caffemodel": _read(IO / "snap_iter_3.caffemodel"),
             "list.txt": _read(IO / "list.txt"),
             **{f"images/{p.name}": _read(p) for p in (IO / "images").iterdir()},
             **_copy_lmdb("lmdb_raw_resized")}
    return {"files": files, "argv": argv, "chdir": True}


def hdf5_data(rng):
    """An HDF5Data layer over a mutated HDF5 file (subprocess: the HDF5 library is C)."""
    data = _read(rng.choice([DATA / "test_data/sample_data.h5", DATA / "test_data/solver_data.h5",
                             IO / "snaph5_iter_3.caffemodel.h5"]))
    if rng.random() < 0.8:
        data = mut.mutate_bytes(data, rng)
    listing = rng.choice(["{d}/x.h5\n", "{d}/x.h5\n{d}/missing.h5\n", "", "{d}\n"])
    net = ('layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
           'hdf5_data_param { source: "{d}/list.txt" batch_size: 3 } }\n')
    return {"files": {"x.h5": data, "list.txt": listing.encode(), "net.prototxt": net.encode()},
            "argv": ["test", "--model={d}/net.prototxt", "--iterations=2"], "isolate": True,
            "format_files": True}


FAMILIES = {
    "net_text": (net_text, 6),
    "real_prototxt": (real_prototxt, 5),
    "solver_text": (solver_text, 2),
    "weights": (weights, 3),
    "weights_h5": (weights_h5, 1),
    "database": (database, 2),
    "mean_file": (mean_file, 2),
    "image_list": (image_list, 2),
    "flags": (flags, 3),
    "hdf5_data": (hdf5_data, 1),
}


def build_cases(count, seed, families=None):
    """``count`` cases drawn by weight from ``families``; the same seed gives the same cases."""
    names = [n for n in FAMILIES if families is None or n in families]
    weights_ = [FAMILIES[n][1] for n in names]
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        family = rng.choices(names, weights_)[0]
        case_rng = random.Random(f"{seed}:{i}:{family}")
        case = FAMILIES[family][0](case_rng)
        case.update(family=family, index=i, seed=seed)
        cases.append(case)
    return cases
