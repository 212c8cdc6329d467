"""Data sharding (netdef/data/shard.py): record i of an epoch goes to rank i mod N.

Layers are built in one process with the shard set by hand, one rank after the other,
so no MPI is needed here.  Labels carry the record index, which identifies each record.
"""

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from netdef.blob import Blob
from netdef.data import shard
from netdef.data.hdf5_io import write_hdf5, write_list_file
from netdef.layer import create_layer
from netdef.proto import caffe_pb2
from tests.parallel.fixtures import write_records


@pytest.fixture(autouse=True)
def _no_shard_left():
    yield
    shard.clear_shard()


def build(text, rank, size, phase=caffe_pb2.TRAIN, seed=0, ntop=2):
    """The layer of ``text`` as rank ``rank`` of ``size`` builds it (own generator seed)."""
    shard.set_shard(rank, size, seed=1234)
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    lp.name, lp.phase = "data", phase
    while len(lp.top) < ntop:
        lp.top.append(["data", "label"][len(lp.top)])
    layer = create_layer(lp, rng=np.random.default_rng(seed + 100 * rank))
    top = [Blob(name=n) for n in lp.top]
    layer.layer_setup([], top)
    shard.clear_shard()
    return layer, top


def labels(layer, top, batches):
    out = []
    for _ in range(batches):
        layer.forward([], top)
        out.append(top[1].data.ravel().astype(int).tolist())
    return out


def close(layers):
    for layer in layers:
        if hasattr(layer, "close"):
            layer.close()


def test_data_ranks_read_the_single_process_batches_between_them(tmp_path):
    """2 ranks x batch 3: the union of the ranks' batch k is batch k of one process
    reading batch 6 (records 6k..6k+5), and one epoch gives every record once."""
    db = write_records(tmp_path / "db", 12, classes=100)
    text = f'type: "Data" data_param {{ source: "{db}" batch_size: 3 backend: LMDB }}'
    ranks = [build(text, r, 2) for r in range(2)]
    single = build(text.replace("batch_size: 3", "batch_size: 6"), 0, 1)
    got = [labels(layer, top, 4) for layer, top in ranks]
    want = labels(*single, 4)
    for k in range(4):
        assert sorted(got[0][k] + got[1][k]) == sorted(want[k])
    assert got[0][0] == [0, 2, 4] and got[1][0] == [1, 3, 5]
    assert sorted(got[0][0] + got[0][1] + got[1][0] + got[1][1]) == list(range(12))
    close([layer for layer, _ in ranks] + [single[0]])


def test_data_shard_with_a_count_not_divisible_by_the_ranks(tmp_path):
    db = write_records(tmp_path / "db", 7, classes=100)
    text = f'type: "Data" data_param {{ source: "{db}" batch_size: 7 backend: LMDB }}'
    seen = []
    layers = []
    for r in range(3):  # 3 ranks x 7 records = 3 epochs of 7 records
        layer, top = build(text, r, 3)
        seen += labels(layer, top, 1)[0]
        layers.append(layer)
    assert sorted(seen) == sorted(list(range(7)) * 3)
    close(layers)


def test_data_shard_resumes_at_a_batch(tmp_path):
    db = write_records(tmp_path / "db", 10, classes=100)
    text = f'type: "Data" data_param {{ source: "{db}" batch_size: 2 backend: LMDB }}'
    layer, top = build(text, 1, 2)
    straight = labels(layer, top, 5)
    layer.set_resume_state({"batch": 3})
    assert labels(layer, top, 2) == straight[3:5]
    close([layer])


def test_test_phase_data_is_never_sharded(tmp_path):
    db = write_records(tmp_path / "db", 6, classes=100)
    text = f'type: "Data" data_param {{ source: "{db}" batch_size: 3 backend: LMDB }}'
    layer, top = build(text, 1, 2, phase=caffe_pb2.TEST)
    assert labels(layer, top, 1) == [[0, 1, 2]]
    close([layer])


def test_image_data_shuffled_epoch_deals_each_image_to_one_rank(tmp_path):
    lines = []
    for i in range(7):
        Image.fromarray(np.full((3, 3, 3), i * 30, np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    text = (f'type: "ImageData" image_data_param {{ source: "{tmp_path}/list.txt" '
            f'root_folder: "{tmp_path}/" batch_size: 1 shuffle: true }}')
    per_rank = []
    layers = []
    for r in range(3):  # ranks draw their own generators, yet share the epoch order
        layer, top = build(text, r, 3)
        per_rank.append(sum(labels(layer, top, 7), []))  # 21 images = 3 epochs
        layers.append(layer)
    for epoch in range(3):
        # stream positions 7e..7e+6 are spread over the ranks: rank r has 3j + r
        got = [per_rank[p % 3][p // 3] for p in range(7 * epoch, 7 * epoch + 7)]
        assert sorted(got) == list(range(7)), epoch
    assert per_rank[0][:3] != [0, 3, 6]  # (shuffled)
    close(layers)


def test_hdf5_data_shuffled_epoch_deals_each_row_to_one_rank(tmp_path):
    files = []
    for f, rows in enumerate(((0, 1, 2, 3), (4, 5, 6))):
        path = str(tmp_path / f"part{f}.h5")
        write_hdf5(path, {"data": np.asarray(rows, np.float32).reshape(-1, 1),
                          "label": np.asarray(rows, np.float32)})
        files.append(path)
    write_list_file(tmp_path / "list.txt", files)
    text = (f'type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ '
            f'source: "{tmp_path}/list.txt" batch_size: 7 shuffle: true }}')
    stream = {}
    for r in range(2):  # 2 ranks x 7 rows = 2 epochs
        layer, top = build(text, r, 2)
        for j, row in enumerate(labels(layer, top, 1)[0]):
            stream[2 * j + r] = row
        layer.set_resume_state({"batch": 0})
        assert labels(layer, top, 1)[0] == [stream[2 * j + r] for j in range(7)]
    assert sorted(stream[p] for p in range(7)) == list(range(7))
    assert sorted(stream[p] for p in range(7, 14)) == list(range(7))


def test_set_shard_of_one_rank_turns_sharding_off():
    assert shard.set_shard(0, 1) is None and shard.current() is None
    with pytest.raises(ValueError):
        shard.set_shard(2, 2)
