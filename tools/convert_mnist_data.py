"""``netdef convert_mnist_data IMAGES LABELS DB``: Caffe's MNIST converter.

Reads an idx image file and an idx label file (gzipped or not) and writes one raw Datum
per image (1 x rows x cols uint8 and its label) under keys ``00000000``, ``00000001``, ...
-- the records Caffe's converter writes, byte for byte.
"""

HELP = "convert MNIST idx files (images, labels) into an LMDB of Datum records"


def add_arguments(p):
    p.add_argument("images", help="idx3 image file (e.g. train-images-idx3-ubyte[.gz])")
    p.add_argument("labels", help="idx1 label file (e.g. train-labels-idx1-ubyte[.gz])")
    p.add_argument("db", help="the database to create")
    p.add_argument("--backend", default="lmdb", choices=["lmdb", "leveldb"],
                   help="database type (default: lmdb)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing database (Caffe refuses)")


def run(args):
    from netdef.data.mnist import convert_mnist
    from netdef.log import logger, setup_logging

    setup_logging()
    count = convert_mnist(args.images, args.labels, args.db, args.backend, args.overwrite)
    logger.info("Processed %d files.", count)
    print(f"wrote {count} records to {args.db}")
    return 0
