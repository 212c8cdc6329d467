"""``netdef convert_imageset [flags] ROOTFOLDER/ LISTFILE DB``: Caffe's tool of that name.

LISTFILE has one "path label" per line (the path may contain spaces; the label follows
the last one).  Each image is stored as a raw BGR Datum, or encoded with --encoded, under
the key ``%08d_<path>``.  Images that cannot be read are skipped with a warning and
counted at the end.  Resizing uses OpenCV's bilinear arithmetic (same bytes as Caffe).
"""

HELP = "convert a list of images into an LMDB of Datum records"


def add_arguments(p):
    p.add_argument("root_folder", metavar="ROOTFOLDER/",
                   help="folder the list's paths are relative to")
    p.add_argument("list_file", metavar="LISTFILE", help='text file of "path label" lines')
    p.add_argument("db", metavar="DB", help="the database to create")
    p.add_argument("--gray", action="store_true", help="read images as grayscale")
    p.add_argument("--shuffle", action="store_true",
                   help="randomly shuffle the order of images and their labels")
    p.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"],
                   help="database type (default: lmdb)")
    p.add_argument("--resize_width", type=int, default=0,
                   help="width images are resized to (with --resize_height)")
    p.add_argument("--resize_height", type=int, default=0,
                   help="height images are resized to (with --resize_width)")
    p.add_argument("--check_size", action="store_true",
                   help="check that all the datums have the same size")
    p.add_argument("--encoded", action="store_true",
                   help="store the encoded image in the datum")
    p.add_argument("--encode_type", default="",
                   help="what to encode the image as ('png', 'jpg', ...); implies --encoded")
    p.add_argument("--seed", type=int, default=None, help="seed for --shuffle")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing database (Caffe refuses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    import time

    import numpy as np

    from netdef.data.image_list import convert_imageset
    from netdef.log import logger, setup_logging

    setup_logging()
    if args.encode_type and not args.encoded:
        logger.info("encode_type specified, assuming encoded=true.")
    start = time.perf_counter()
    written, skipped = convert_imageset(
        args.root_folder, args.list_file, args.db, gray=args.gray, shuffle=args.shuffle,
        backend=args.backend, resize_height=args.resize_height,
        resize_width=args.resize_width, check_size=args.check_size,
        encoded=args.encoded or bool(args.encode_type), encode_type=args.encode_type,
        overwrite=args.overwrite, rng=np.random.default_rng(args.seed),
        progress=not args.quiet)
    seconds = max(time.perf_counter() - start, 1e-9)
    logger.info("Processed %d files.", written)
    print(f"wrote {written} images to {args.db} ({written / seconds:.0f} images/s)")
    if skipped:
        print(f"skipped {len(skipped)} image(s) that could not be read:")
        for number, _path, reason in skipped[:20]:
            print(f"  {args.list_file}:{number}: {reason}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more")
    return 0
