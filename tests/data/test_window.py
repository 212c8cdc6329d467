"""Window files and Caffe's window warp geometry."""

import pytest

from netdef.data.window import read_window_file, window_geometry
from netdef.errors import DataError


def test_parse_splits_foreground_and_background(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("# 0\nimg0.jpg\n3 20 30\n3\n1 0.9 0 0 9 9\n0 0.1 5 5 15 15\n2 0.4 1 1 2 2\n"
                 "# 1\nimg1.jpg\n3 10 10\n1\n3 0.6 1 2 3 4\n")
    images, fg, bg = read_window_file(str(p), "root/", 0.5, 0.3)
    assert images == [("root/img0.jpg", (3, 20, 30)), ("root/img1.jpg", (3, 10, 10))]
    assert fg[:, :3].tolist() == [[0, 1, 0.9], [1, 3, 0.6]]
    assert bg.tolist() == [[0, 0, 0.0, 5, 5, 15, 15]]  # 0.4 is neither fg nor bg


def test_parse_errors_name_the_line(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("# 0\nimg.jpg\n3 20 30\n1\n1 high 0 0 9 9\n")
    with pytest.raises(DataError, match=r"w.txt:5: expected an overlap, got 'high'"):
        read_window_file(str(p))
    p.write_text("# 0\nimg.jpg\n3 20\n")
    with pytest.raises(DataError, match="ends early"):
        read_window_file(str(p))
    p.write_text("# 0\nimg.jpg\n3 20 30\n1\n0 0.9 0 0 9 9\n")
    with pytest.raises(DataError, match="needs a class > 0"):
        read_window_file(str(p))


def test_warp_without_context_keeps_the_box():
    assert window_geometry((2, 3, 10, 12), 50, 60, 8, 0, False, False) == \
        ((2, 3, 10, 12), (8, 8), (0, 0))


def test_context_pad_clipped_at_the_border():
    # box at the top-left corner: the grown region leaves the image, the pad shows it
    box, warp, pad = window_geometry((0, 0, 9, 9), 100, 100, 10, 2, False, False)
    assert box[0] == 0 and box[1] == 0
    assert pad[0] > 0 and pad[1] > 0
    assert pad[0] + warp[0] <= 10 and pad[1] + warp[1] <= 10
    # mirroring takes the right-hand pad instead
    _, _, pad_m = window_geometry((0, 0, 9, 9), 100, 100, 10, 2, False, True)
    assert pad_m[1] == 0


def test_square_mode_squares_the_box():
    box, warp, pad = window_geometry((40, 20, 49, 59), 100, 100, 16, 0, True, False)
    assert box == (25, 20, 65, 60) and warp == (16, 16) and pad == (0, 0)
