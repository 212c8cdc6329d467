"""Data layers: the reference Caffe's Data layer output, and every layer's semantics."""

import gc
import os

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from netdef.blob import Blob
from netdef.data.datum import array_to_datum, encoded_datum
from netdef.data.images import encode_image
from netdef.data.lmdb_io import LMDBWriter
from netdef.errors import DataError, LayerError
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.shared import CONFORMANCE, DATA, need

IO = os.path.join(CONFORMANCE, "io")


def make(text, ntop=2, phase=caffe_pb2.TEST, seed=0, bottom=()):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name = lp.name or "d"
    lp.phase = phase
    while len(lp.top) < ntop:
        lp.top.append(["data", "label", "extra"][len(lp.top)])
    layer = create_layer(lp, rng=np.random.default_rng(seed))
    top = [Blob(name=n) for n in lp.top]
    layer.layer_setup(list(bottom), top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return [t.data.copy() for t in top]


def write_lmdb(path, datums):
    with LMDBWriter(str(path)) as w:
        for i, d in enumerate(datums):
            w.put(f"{i:08d}", d if isinstance(d, bytes) else d.SerializeToString())
    return str(path)


def raw_db(tmp_path, n=5, shape=(3, 4, 6), name="db"):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
    path = write_lmdb(tmp_path / name, [array_to_datum(a, i) for i, a in enumerate(arrays)])
    return path, arrays


# -- the reference Caffe's Data layer --------------------------------------------------------
def golden_cases():
    path = os.path.join(IO, "data_layer.npz")
    if not os.path.exists(path):
        return []
    z = np.load(path)
    return sorted({k.split("/")[0] for k in z.files if k.count("/") >= 1})


@pytest.mark.parametrize("case", golden_cases())
def test_data_layer_reproduces_caffe(case, monkeypatch):
    monkeypatch.chdir(IO)
    z = np.load("data_layer.npz")
    net = text_format.Parse(str(z[f"{case}/net"][()]), caffe_pb2.NetParameter())
    assert str(z[f"{case}/phase"][()]) == "TEST"
    layer, top = make(text_format.MessageToString(net.layer[0]), ntop=0)
    i = 0
    while f"{case}/data/{i}" in z.files:
        data, label = forward(layer, top)
        np.testing.assert_array_equal(data, z[f"{case}/data/{i}"], err_msg=f"{case} #{i}")
        np.testing.assert_array_equal(label, z[f"{case}/label/{i}"])
        i += 1
    layer.close()


def test_data_layer_inside_a_net(monkeypatch):
    from netdef.net import Net
    monkeypatch.chdir(need(IO))
    z = np.load("data_layer.npz")
    net = Net(str(z["mnist_scale/net"][()]), phase="TEST")
    out = net.forward()
    np.testing.assert_array_equal(out["data"], z["mnist_scale/data/0"])
    np.testing.assert_array_equal(out["label"], z["mnist_scale/label/0"])


# -- Input -------------------------------------------------------------------------------------
def test_input_shapes_once_or_per_top():
    _, top = make('type: "Input" input_param { shape { dim: 2 dim: 3 } }', ntop=2)
    assert [t.shape for t in top] == [(2, 3), (2, 3)]
    _, top = make('type: "Input" input_param { shape { dim: 2 } shape { dim: 4 dim: 1 } }')
    assert [t.shape for t in top] == [(2,), (4, 1)]
    with pytest.raises(LayerError, match="once per top blob"):
        make('type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } }', ntop=3)


# -- Data --------------------------------------------------------------------------------------
def test_data_train_crop_and_mirror_are_seeded_and_per_item(tmp_path):
    path, arrays = raw_db(tmp_path, n=4, shape=(1, 6, 6))
    text = (f'type: "Data" transform_param {{ crop_size: 4 mirror: true }} '
            f'data_param {{ source: "{path}" backend: LMDB batch_size: 4 }}')
    runs = []
    for _ in range(2):
        layer, top = make(text, phase=caffe_pb2.TRAIN, seed=5)
        runs.append([forward(layer, top)[0] for _ in range(6)])
        layer.close()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    placements = set()
    for batch in runs[0]:
        for item, src in zip(batch, arrays):
            found = [(y, x, m) for y in range(3) for x in range(3) for m in (0, 1)
                     if np.array_equal(item[0], src[0, y:y + 4, x:x + 4][:, ::-1 if m else 1])]
            assert found, "every item is a crop of its record, maybe mirrored"
            placements.add(found[0])
    assert len(placements) > 6


def test_two_layers_on_one_db_have_their_own_cursors(tmp_path):
    path, arrays = raw_db(tmp_path, n=5)
    text = f'type: "Data" data_param {{ source: "{path}" backend: LMDB batch_size: 2 }}'
    a, ta = make(text)
    b, tb = make(text)
    labels_a = [forward(a, ta)[1].tolist() for _ in range(3)]
    labels_b = [forward(b, tb)[1].tolist() for _ in range(1)]
    assert labels_a == [[0, 1], [2, 3], [4, 0]]  # wraps around after the last record
    assert labels_b == [[0, 1]]
    np.testing.assert_array_equal(ta[0].data[0], arrays[4])
    a.close()
    b.close()


def test_data_single_top_float_records_and_sync_loading(tmp_path):
    arrays = [np.full((2, 2, 2), i / 4, np.float32) for i in range(3)]
    path = write_lmdb(tmp_path / "f", [array_to_datum(a, 9) for a in arrays])
    layer, top = make(f'type: "Data" transform_param {{ scale: 2 }} data_param {{ '
                      f'source: "{path}" backend: LMDB batch_size: 3 prefetch: 0 }}', ntop=1)
    (data,) = forward(layer, top)
    np.testing.assert_allclose(data, np.stack(arrays) * 2)


def test_rand_skip_starts_later(tmp_path):
    path, _ = raw_db(tmp_path, n=5)
    starts = set()
    for seed in range(8):
        layer, top = make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB '
                          f'batch_size: 1 rand_skip: 4 }}', seed=seed)
        starts.add(int(forward(layer, top)[1][0]))
        layer.close()
    assert starts <= {0, 1, 2, 3} and len(starts) > 1


def test_corrupt_record_raises_in_forward_with_its_key(tmp_path):
    good = array_to_datum(np.zeros((1, 2, 2), np.uint8), 0)
    short = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\x00\x00\x00")
    path = write_lmdb(tmp_path / "bad", [good, good, short])
    layer, top = make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB '
                      'batch_size: 1 }')
    forward(layer, top)
    forward(layer, top)
    for _ in range(2):
        with pytest.raises(DataError, match=r"layer 'd' \(Data\).*'00000002'.*3 bytes"):
            forward(layer, top)
    layer.close()


def test_undecodable_and_mismatched_records(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    path = write_lmdb(tmp_path / "enc", [encoded_datum(encode_image(img, "png"), 0),
                                         encoded_datum(b"\x89PNG broken", 1)])
    layer, top = make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB '
                      'batch_size: 2 }')
    with pytest.raises(DataError, match="cannot decode record '00000001'"):
        forward(layer, top)
    other = np.zeros((3, 6, 5), np.uint8)
    path = write_lmdb(tmp_path / "mix", [array_to_datum(img.transpose(2, 0, 1), 0),
                                         array_to_datum(other, 1)])
    layer, top = make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB '
                      'batch_size: 2 }')
    with pytest.raises(DataError, match="'00000001'.*same size unless crop_size"):
        forward(layer, top)


def test_data_setup_errors(tmp_path):
    with pytest.raises(DataError, match=r"layer 'd' \(Data\): LMDB .*does not exist"):
        make(f'type: "Data" data_param {{ source: "{tmp_path}/none" backend: LMDB '
             'batch_size: 1 }')
    path, _ = raw_db(tmp_path)
    try:
        import plyvel  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="LevelDB is not supported.*add 'backend: LMDB'"):
            make(f'type: "Data" data_param {{ source: "{path}" batch_size: 1 }}')
    with pytest.raises(LayerError, match="batch_size must be positive"):
        make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB }}')
    with pytest.raises(DataError, match="smaller than crop_size 9"):
        make(f'type: "Data" transform_param {{ crop_size: 9 }} data_param {{ '
             f'source: "{path}" backend: LMDB batch_size: 1 }}')


def test_prefetch_thread_stops_when_the_layer_goes_away(tmp_path):
    path, _ = raw_db(tmp_path)
    layer, top = make(f'type: "Data" data_param {{ source: "{path}" backend: LMDB '
                      'batch_size: 2 }')
    forward(layer, top)
    thread = layer._loader._thread
    assert thread.daemon and thread.is_alive()
    del layer
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()


# -- ImageData ---------------------------------------------------------------------------------
def test_image_data_reads_the_list(tmp_path):
    images = need(os.path.join(IO, "images"))
    lst = tmp_path / "list.txt"
    lst.write_text(open(os.path.join(IO, "list.txt")).read())
    layer, top = make(f'type: "ImageData" image_data_param {{ source: "{lst}" '
                      f'root_folder: "{images}/" new_height: 8 new_width: 10 batch_size: 4 }}')
    data, label = forward(layer, top)
    assert data.shape == (4, 3, 8, 10)
    assert label.tolist() == [0, 1, 2, 0]
    from netdef.data.datum import datum_to_chw, parse_datum
    from netdef.data.lmdb_io import LMDBReader
    with LMDBReader(os.path.join(IO, "lmdb_raw_resized")) as r:
        caffe = [datum_to_chw(parse_datum(v)) for _, v in r]
    for got, want in zip(data, caffe):
        np.testing.assert_array_equal(got, want)  # same pixels as Caffe's convert_imageset
    data, label = forward(layer, top)
    assert label.tolist() == [1, 2, 0, 1]
    layer.close()


def test_image_data_shuffle_and_gray(tmp_path):
    images = need(os.path.join(IO, "images"))
    lst = tmp_path / "list.txt"
    lst.write_text(open(os.path.join(IO, "list.txt")).read())
    layer, top = make(f'type: "ImageData" image_data_param {{ source: "{lst}" '
                      f'root_folder: "{images}" new_height: 6 new_width: 6 batch_size: 6 '
                      'shuffle: true is_color: false }', seed=3)
    data, label = forward(layer, top)
    assert data.shape == (6, 1, 6, 6)
    assert sorted(label.tolist()) == [0, 0, 1, 1, 2, 2]
    layer.close()


def test_image_data_errors_name_the_list_line(tmp_path):
    images = need(os.path.join(IO, "images"))
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 0\nb.png one\n")
    with pytest.raises(DataError, match=r"list.txt:2: label 'one' is not an integer"):
        make(f'type: "ImageData" image_data_param {{ source: "{lst}" root_folder: '
             f'"{images}/" }}')
    lst.write_text("a.jpg 0\nmissing.jpg 1\n")
    layer, top = make(f'type: "ImageData" image_data_param {{ source: "{lst}" root_folder: '
                      f'"{images}/" batch_size: 1 }}')
    forward(layer, top)
    with pytest.raises(DataError, match=r"list.txt:2: cannot read image .*missing.jpg"):
        forward(layer, top)
    layer.close()


# -- HDF5Data ----------------------------------------------------------------------------------
@pytest.fixture
def caffe_root(tmp_path, monkeypatch):
    test_data = need(os.path.join(DATA, "test_data"))
    (tmp_path / "src" / "caffe" / "test").mkdir(parents=True)
    os.symlink(test_data, tmp_path / "src" / "caffe" / "test" / "test_data")
    monkeypatch.chdir(tmp_path)
    return test_data


def test_hdf5_data_layer(caffe_root):
    src = os.path.join(caffe_root, "sample_data_list.txt")
    layer, top = make(f'type: "HDF5Data" top: "data" top: "label" top: "label2" '
                      f'hdf5_data_param {{ source: "{src}" batch_size: 5 }}', ntop=3)
    assert [t.shape for t in top] == [(5, 8, 6, 5), (5, 1), (5, 1)]
    for it in range(4):
        data, label, label2 = forward(layer, top)
        assert label[:, 0].tolist() == list(1 + 5 * (it % 2) + np.arange(5))
        assert data.ravel()[0] == (0 if it < 2 else 2400) + 1200 * (it % 2)
    np.testing.assert_array_equal(label2, label + 1)


def test_hdf5_data_errors(caffe_root):
    src = os.path.join(caffe_root, "sample_data_list.txt")
    with pytest.raises(DataError, match=r"HDF5Data.*no dataset 'target'"):
        make(f'type: "HDF5Data" top: "data" top: "target" '
             f'hdf5_data_param {{ source: "{src}" batch_size: 2 }}')
    with pytest.raises(LayerError, match="does not transform data"):
        make(f'type: "HDF5Data" transform_param {{ scale: 2 }} '
             f'hdf5_data_param {{ source: "{src}" batch_size: 2 }}')


# -- MemoryData --------------------------------------------------------------------------------
def test_memory_data_serves_batches_in_turn():
    layer, top = make('type: "MemoryData" memory_data_param { batch_size: 2 channels: 1 '
                      'height: 2 width: 3 }')
    assert top[0].shape == (2, 1, 2, 3) and top[1].shape == (2,)
    with pytest.raises(LayerError, match="set_input_arrays"):
        forward(layer, top)
    data = np.arange(24, dtype=np.float32).reshape(4, 1, 2, 3)
    labels = np.arange(4, dtype=np.float32)
    layer.set_input_arrays(data, labels)
    out = [forward(layer, top) for _ in range(3)]
    np.testing.assert_array_equal(out[0][0], data[:2])
    np.testing.assert_array_equal(out[1][0], data[2:])
    np.testing.assert_array_equal(out[2][0], data[:2])
    assert top[1].shape == (2, 1, 1, 1) and out[1][1].ravel().tolist() == [2, 3]
    with pytest.raises(DataError, match="multiple of batch_size"):
        layer.set_input_arrays(data[:3], labels[:3])
    with pytest.raises(DataError, match="C-contiguous float32"):
        layer.set_input_arrays(data.astype(np.float64), labels)
    with pytest.raises(DataError, match=r"shape \(N, 1, 2, 3\)"):
        layer.set_input_arrays(np.zeros((4, 2, 2, 3), np.float32), labels)


def test_memory_data_datums_are_transformed():
    layer, top = make('type: "MemoryData" transform_param { scale: 0.5 } '
                      'memory_data_param { batch_size: 1 channels: 1 height: 1 width: 2 }')
    layer.add_datum_vector([array_to_datum(np.array([[[2, 4]]], np.uint8), 3)])
    data, label = forward(layer, top)
    assert data.ravel().tolist() == [1, 2] and label.ravel().tolist() == [3]
    with pytest.raises(LayerError, match="must be specified and positive"):
        make('type: "MemoryData" memory_data_param { batch_size: 1 channels: 1 }')


# -- DummyData ---------------------------------------------------------------------------------
def test_dummy_data_constant_once_random_every_time():
    layer, top = make('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } '
                      'shape { dim: 4 } data_filler { type: "constant" value: 7 } '
                      'data_filler { type: "gaussian" std: 1 } }')
    assert np.all(top[0].data == 7) and top[1].shape == (4,)
    top[0].data[...] = 0
    first = forward(layer, top)
    second = forward(layer, top)
    assert np.all(first[0] == 0)  # constant tops are not refilled
    assert not np.array_equal(first[1], second[1])


def test_dummy_data_legacy_dims_and_errors():
    _, top = make('type: "DummyData" dummy_data_param { num: 2 channels: 3 height: 4 '
                  'width: 5 }', ntop=1)
    assert top[0].shape == (2, 3, 4, 5) and not top[0].data.any()
    with pytest.raises(LayerError, match="both shape and legacy"):
        make('type: "DummyData" dummy_data_param { num: 1 shape { dim: 1 } }', ntop=1)
    with pytest.raises(LayerError, match="0, 1 or equal to the number of tops"):
        make('type: "DummyData" dummy_data_param { shape { dim: 1 } data_filler {} '
             'data_filler {} }', ntop=3)


# -- WindowData --------------------------------------------------------------------------------
def test_window_data_warps_windows(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "im.png"), img)
    (tmp_path / "w.txt").write_text("# 0\nim.png\n3 30 40\n2\n"
                                    "2 0.8 5 6 24 20\n0 0.1 0 0 9 9\n")
    layer, top = make(f'type: "WindowData" transform_param {{ crop_size: 8 '
                      f'mean_value: 10 }} window_data_param {{ source: "{tmp_path}/w.txt" '
                      f'root_folder: "{tmp_path}/" batch_size: 4 fg_fraction: 0.5 '
                      'scale: 0.5 }')
    data, label = forward(layer, top)
    assert data.shape == (4, 3, 8, 8) and label.tolist() == [0, 0, 2, 2]
    want_fg = cv2.resize(img[6:21, 5:25], (8, 8)).transpose(2, 0, 1)
    want_bg = cv2.resize(img[0:10, 0:10], (8, 8)).transpose(2, 0, 1)
    np.testing.assert_allclose(data[2], (want_fg - 10.0) * 0.5)
    np.testing.assert_allclose(data[0], (want_bg - 10.0) * 0.5)
    layer.close()


# -- HDF5Output --------------------------------------------------------------------------------
def test_hdf5_output_appends_each_forward(tmp_path):
    data = Blob((2, 3), name="data")
    label = Blob((2,), name="label")
    lp = text_format.Parse(f'name: "out" type: "HDF5Output" bottom: "data" bottom: "label" '
                           f'hdf5_output_param {{ file_name: "{tmp_path}/o.h5" }}',
                           caffe_pb2.LayerParameter())
    layer = create_layer(lp)
    layer.layer_setup([data, label], [])
    for i in range(2):
        data.data[...] = i
        label.data[...] = 10 + i
        layer.forward([data, label], [])
    layer.close()
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["data"].shape == (4, 3) and f["data"][2, 0] == 1
        assert f["label"][()].tolist() == [10, 10, 11, 11]
