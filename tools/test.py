"""``netdef test``: Caffe's ``caffe test`` -- score a model over N batches."""

HELP = "score a trained model over --iterations batches"


def add_arguments(p):
    p.add_argument("--model", required=True, help="the model definition (.prototxt)")
    p.add_argument("--weights", default="", help="trained weights (.caffemodel[.h5])")
    p.add_argument("--iterations", type=int, default=50, help="number of batches to run")
    p.add_argument("--phase", default="TEST", choices=["TRAIN", "TEST"])
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--stage", default="", help="comma-separated net stages")
    p.add_argument("--gpu", default=None, help="accepted for compatibility; ignored")


def run(args):
    import numpy as np

    from netdef.log import logger, setup_logging
    from netdef.net import Net

    setup_logging()
    stages = [s for s in args.stage.split(",") if s]
    net = Net(args.model, phase=args.phase, level=args.level, stages=stages)
    if args.weights:
        for w in args.weights.split(","):
            net.copy_from(w)
    logger.info("Running for %d iterations.", args.iterations)
    scores = None
    names = []
    total_loss = 0.0
    for i in range(args.iterations):
        loss = net.forward_from_to()
        total_loss += loss
        values, names = [], []
        for out in net.outputs:
            for v in net.blobs[out].data.ravel():
                values.append(float(v))
                names.append(out)
                logger.info("Batch %d, %s = %g", i, out, v)
        arr = np.asarray(values, np.float64)
        scores = arr if scores is None else scores + arr
    total_loss /= max(args.iterations, 1)
    logger.info("Loss: %g", total_loss)
    for name, s in zip(names, scores if scores is not None else []):
        mean = s / args.iterations
        w = net.blob_loss_weights.get(name, 0.0)
        tail = f" (* {w:g} = {w * mean:g} loss)" if w else ""
        logger.info("%s = %g%s", name, mean, tail)
    return 0
