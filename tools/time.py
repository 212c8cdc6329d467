"""``netdef time``: Caffe's ``caffe time`` -- per-layer forward/backward milliseconds."""

HELP = "benchmark a model's execution time, layer by layer"


def add_arguments(p):
    p.add_argument("--model", required=True, help="the model definition (.prototxt)")
    p.add_argument("--iterations", type=int, default=50, help="number of iterations to time")
    p.add_argument("--phase", default="TRAIN", choices=["TRAIN", "TEST"])
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--stage", default="", help="comma-separated net stages")
    p.add_argument("--weights", default="", help="optional weights to load first")
    p.add_argument("--gpu", default=None, help="accepted for compatibility; ignored")


def run(args):
    from netdef.log import logger, setup_logging
    from netdef.net import Net
    from netdef.timing import time_net

    setup_logging()
    stages = [s for s in args.stage.split(",") if s]
    net = Net(args.model, phase=args.phase, level=args.level, stages=stages)
    if args.weights:
        net.copy_from(args.weights)
    logger.info("Performing Forward")
    logger.info("Initial loss: %g", net.forward_from_to())
    logger.info("Performing Backward")
    net.backward_from_to()
    report = time_net(net, args.iterations)
    logger.info("*** Benchmark begins ***")
    logger.info("Testing for %d iterations.", args.iterations)
    logger.info("Average time per layer: ")
    for row in report["layers"]:
        logger.info("%10s\tforward: %.5g ms.", row["name"], row["forward_ms"])
        logger.info("%10s\tbackward: %.5g ms.", row["name"], row["backward_ms"])
    logger.info("Average Forward pass: %.5g ms.", report["forward_ms"])
    logger.info("Average Backward pass: %.5g ms.", report["backward_ms"])
    logger.info("Average Forward-Backward: %.5g ms.", report["forward_backward_ms"])
    logger.info("Total Time: %.5g ms.", report["total_ms"])
    logger.info("*** Benchmark ends ***")
    return 0
