"""``netdef extract_features``: Caffe's tool -- save named blobs of a trained net per item."""

HELP = "run a trained net over its data and save named blobs to LMDB or HDF5"


def add_arguments(p):
    p.add_argument("weights", help="trained weights (.caffemodel[.h5])")
    p.add_argument("model", help="net prototxt whose data layer reads the dataset (TEST phase)")
    p.add_argument("blobs", help="comma-separated blob names, e.g. fc7,prob")
    p.add_argument("outputs", help="comma-separated output databases, one per blob")
    p.add_argument("num_mini_batches", type=int, help="how many batches to run")
    p.add_argument("db_type", nargs="?", default="lmdb", choices=["lmdb", "leveldb", "hdf5"],
                   help="output format (default lmdb)")
    p.add_argument("mode", nargs="?", default="CPU", help="CPU/GPU, accepted for compatibility")
    p.add_argument("device_id", nargs="?", default="0", help="accepted for compatibility")


def run(args):
    from netdef.features import extract_features
    from netdef.log import setup_logging
    from netdef.net import Net

    setup_logging()
    net = Net(args.model, phase="TEST", weights=args.weights)
    extract_features(net, args.blobs.split(","), args.outputs.split(","),
                     args.num_mini_batches, args.db_type)
    return 0
