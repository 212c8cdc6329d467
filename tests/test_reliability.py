"""Targeted tests for what the fuzzer (tests/fuzz) found: each bad input, one clear error."""

import os
import shutil

import numpy as np
import pytest

from netdef.errors import DataError, LayerError, MemoryLimitError, NetdefError, WeightsError
from netdef.memory import check_allocation, human
from netdef.net import Net
from netdef.tools.main import main

from .shared import CONFORMANCE, DATA, need

IO = os.path.join(CONFORMANCE, "io")


def _run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("netdef: error: ")]
    return rc, errors, err


def test_usage_errors_end_in_one_error_line(capsys):
    rc, errors, err = _run(["time", "--iterations=abc"], capsys)
    assert rc == 2 and len(errors) == 1 and "usage:" in err
    assert "--iterations" in errors[0] or "--model" in errors[0]
    rc, errors, _ = _run(["trian"], capsys)
    assert rc == 2 and len(errors) == 1 and "trian" in errors[0]


def test_memory_error_is_one_clean_line(capsys, monkeypatch):
    import netdef.tools.summary as summary

    def explode(args):
        raise MemoryError()
    monkeypatch.setattr(summary, "run", explode)
    rc, errors, err = _run(["summary", "x.prototxt"], capsys)
    assert rc == 1 and len(errors) == 1 and "out of memory" in errors[0]
    assert "Traceback" not in err


def test_a_huge_input_is_refused_before_allocating():
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { '
            'dim: 1000000 dim: 1000 dim: 1000 } } }')
    with pytest.raises(MemoryLimitError, match=r"blob 'data'.*needs 7\.28 TiB"):
        Net(text, phase="TEST")


def test_check_allocation_figures():
    check_allocation(10, "tiny")  # small requests never look anything up
    with pytest.raises(MemoryLimitError, match="needs 8 PiB"):
        check_allocation(8 << 50, "everything")
    assert human(1536) == "1.5 KiB" and human(12) == "12 B"


@pytest.mark.parametrize("field, text", [
    ("power_param.power", 'type: "Power" power_param { power: nan }'),
    ("loss_weight", 'type: "ReLU" loss_weight: inf'),
    ("convolution_param.weight_filler.std",
     'type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 '
     'weight_filler { type: "gaussian" std: nan } }'),
    ("param[0].lr_mult", 'type: "Convolution" param { lr_mult: -inf } '
     'convolution_param { num_output: 2 kernel_size: 1 }'),
])
def test_non_finite_numbers_are_refused(field, text):
    net = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 '
           'dim: 1 dim: 2 dim: 2 } } } layer { name: "c" bottom: "data" top: "c" ' + text + ' }')
    with pytest.raises(LayerError) as info:
        Net(net, phase="TEST")
    assert "layer 'c'" in str(info.value) and f"{field} is " in str(info.value)


def test_clip_bounds_may_be_infinite():
    net = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 '
           'dim: 2 } } } layer { name: "c" type: "Clip" bottom: "data" top: "c" '
           'clip_param { min: -inf max: 1 } }')
    try:
        Net(net, phase="TEST")
    except LayerError as exc:
        assert "finite" not in str(exc)


def _copy_lmdb(tmp_path, name="lmdb_raw_resized"):
    src = need(os.path.join(IO, name))
    dst = tmp_path / "db"
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_truncated_lmdb_is_refused_not_a_sigbus(tmp_path):
    from netdef.data.lmdb_io import open_reader

    db = _copy_lmdb(tmp_path)
    data = (db / "data.mdb").read_bytes()
    (db / "data.mdb").write_bytes(data[:5000])
    with pytest.raises(DataError, match="truncated"):
        with open_reader(str(db), "lmdb") as reader:
            list(reader)


def test_damaged_lmdb_page_is_a_data_error(tmp_path):
    from netdef.data.lmdb_io import open_reader

    db = _copy_lmdb(tmp_path)
    data = bytearray((db / "data.mdb").read_bytes())
    page = 4096 * 2  # the first data page after the two meta pages
    data[page + 10] ^= 0xFF  # the page flags: LMDB reports "page was wrong type"
    (db / "data.mdb").write_bytes(bytes(data))
    try:
        with open_reader(str(db), "lmdb") as reader:
            list(reader)
    except DataError:
        pass


def test_damaged_hdf5_weights_are_a_weights_error(tmp_path):
    from netdef.weights import load_weights

    raw = open(need(os.path.join(IO, "snaph5_iter_3.caffemodel.h5")), "rb").read()
    rng = np.random.default_rng(0)
    for trial in range(12):
        buf = bytearray(raw)
        for i in rng.integers(512, len(buf), 64):
            buf[i] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"w{trial}.caffemodel.h5"
        path.write_bytes(bytes(buf))
        try:
            load_weights(str(path))
        except NetdefError as exc:
            assert isinstance(exc, WeightsError)


def test_out_of_range_label_names_the_line(tmp_path):
    from netdef.data.image_list import read_image_list

    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg 0\nb.png 2147483648\n")
    with pytest.raises(DataError, match=r"list.txt:2: label 2147483648 does not fit"):
        read_image_list(str(listing))


def test_nul_byte_in_an_image_path_is_a_data_error():
    from netdef.data.images import read_image

    with pytest.raises(DataError, match="cannot read image"):
        read_image("bad\x00name.jpg")


@pytest.mark.parametrize("name, what", [("images/cat.jpg", "JPEG"),
                                        ("ilsvrc12/ilsvrc_2012_mean.npy", "NumPy")])
def test_mean_file_of_another_kind_is_named(name, what):
    from netdef.data.mean import read_mean_file

    with pytest.raises(DataError, match=what):
        read_mean_file(need(os.path.join(DATA, name)))


def _relu_chain(n, count):
    text = (f'name: "chain" layer {{ name: "data" type: "Input" top: "data" input_param {{ '
            f'shape {{ dim: {count} }} }} }}')
    bottom = "data"
    for i in range(n):
        text += (f' layer {{ name: "r{i}" type: "ReLU" bottom: "{bottom}" top: "r{i}" }}')
        bottom = f"r{i}"
    return text


def test_the_whole_net_is_held_against_memory(monkeypatch):
    import netdef.memory as memory
    from netdef.blob import Blob

    monkeypatch.setattr(memory, "available_bytes", lambda: 100 << 20)
    four_million = 4_000_000  # 32 MB per blob (data + diff): each fits, four do not
    with pytest.raises(MemoryLimitError, match=r"net 'chain' needs at least .* for its blobs"):
        Net(_relu_chain(3, four_million), phase="TEST")
    Net(_relu_chain(1, four_million), phase="TEST")
    # once the build is over, later blobs are judged on their own
    Blob((four_million,)), Blob((four_million,)), Blob((four_million,))


def test_damaged_lmdb_header_is_refused_not_a_sigbus(tmp_path):
    """A flipped bit in the meta page's page counts (found by the fuzzer: walking the
    tree it described read past the end of data.mdb, a SIGBUS)."""
    from netdef.data.lmdb_io import open_reader

    db = _copy_lmdb(tmp_path)
    data = bytearray((db / "data.mdb").read_bytes())
    # both meta pages: header (16) + magic, version, address, mapsize (24) + the free DB
    # (48) + the main DB's pad/flags/depth/branch_pages (16) = its leaf_pages, whose
    # top byte we set
    for page in (0, 4096):
        data[page + 16 + 24 + 48 + 16 + 6] = 0x40
    (db / "data.mdb").write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged"):
        with open_reader(str(db), "lmdb") as reader:
            list(reader)
