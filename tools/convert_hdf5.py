"""``netdef convert_hdf5 OUT.h5 (--data X.npy [--label Y.npy] | --images LISTFILE)``.

Writes the float32 datasets HDF5Data reads ('data' and 'label' by default), chunked by
rows and optionally gzip-compressed, split into several files with --rows_per_file, plus
the list text file naming them (for hdf5_data_param.source).  With --images, the images
of a "path label" list are read as BGR pixel values (0-255; add --scale 0.00390625 for
[0, 1]), since HDF5Data applies no transform_param.
"""

HELP = "write arrays (.npy) or a list of images into HDF5 files for the HDF5Data layer"


def add_arguments(p):
    p.add_argument("output", metavar="OUT.h5", help="HDF5 file to write")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a .npy array, rows on axis 0")
    src.add_argument("--images", metavar="LISTFILE", help='text file of "path label" lines')
    p.add_argument("--label", help="a .npy array of labels (with --data)")
    p.add_argument("--data_name", default="data", help="dataset name of the data (top name)")
    p.add_argument("--label_name", default="label", help="dataset name of the labels")
    p.add_argument("--root_folder", default="", help="folder the list's paths are relative to")
    p.add_argument("--gray", action="store_true", help="read images as grayscale")
    p.add_argument("--resize_height", type=int, default=0, help="resize images to this height")
    p.add_argument("--resize_width", type=int, default=0, help="resize images to this width")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the data by this")
    p.add_argument("--rows_per_file", type=int, default=0,
                   help="split into files of this many rows (default: one file)")
    p.add_argument("--chunk_rows", type=int, default=64, help="rows per HDF5 chunk")
    p.add_argument("--gzip", type=int, default=None, metavar="LEVEL",
                   help="gzip-compress the datasets at this level (0-9)")
    p.add_argument("--list_file", default=None,
                   help="list file to write (default: OUT with the extension .txt)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


def run(args):
    import numpy as np

    from netdef.data.hdf5_io import convert_to_hdf5
    from netdef.data.image_list import image_list_arrays
    from netdef.errors import DataError, UsageError

    if args.gzip is not None and not 0 <= args.gzip <= 9:
        raise UsageError(f"--gzip takes a level from 0 to 9, got {args.gzip}")
    if args.images:
        if args.label:
            raise UsageError("--label goes with --data; --images takes labels from the list")
        data, label = image_list_arrays(args.images, args.root_folder, args.gray,
                                        args.resize_height, args.resize_width)
    else:
        data = _load_npy(args.data, DataError)
        label = _load_npy(args.label, DataError) if args.label else None
    arrays = {args.data_name: np.asarray(data, np.float32) * np.float32(args.scale)}
    if label is not None:
        arrays[args.label_name] = label
    files, list_file = convert_to_hdf5(args.output, arrays, args.rows_per_file, args.gzip,
                                       args.chunk_rows, args.list_file, args.overwrite)
    shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in arrays.items())
    print(f"wrote {shapes} to {len(files)} file(s): {', '.join(files)}")
    print(f"list file for hdf5_data_param.source: {list_file}")
    return 0


def _load_npy(path, error):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read array {path!r}: {exc}") from None
