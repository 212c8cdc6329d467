"""``netdef compute_image_mean DB [OUT.binaryproto]``: Caffe's tool of that name.

Averages every record of a database (encoded images are decoded) into a mean image,
writes it as a BlobProto (1 x C x H x W) when OUT is given, and prints the per-channel
means.
"""

HELP = "compute the mean image of a database (and write it as .binaryproto)"


def add_arguments(p):
    p.add_argument("db", metavar="DB", help="database of Datum records")
    p.add_argument("output", metavar="OUT", nargs="?", default=None,
                   help="where to write the mean (.binaryproto)")
    p.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"],
                   help="database type (default: lmdb)")


def run(args):
    from netdef.data.lmdb_io import open_reader
    from netdef.data.mean import channel_means, compute_mean, write_mean_file
    from netdef.log import logger, setup_logging

    setup_logging()
    with open_reader(args.db, args.backend) as reader:
        mean, count = compute_mean(iter(reader), source=args.db)
    logger.info("Processed %d files.", count)
    if args.output:
        logger.info("Write to %s", args.output)
        write_mean_file(args.output, mean)
    print(f"mean of {count} records, shape {tuple(mean.shape)} (C, H, W)")
    for c, value in enumerate(channel_means(mean)):
        print(f"mean_value channel [{c}]: {value:g}")
    return 0
