"""``netdef plot_log LOG OUT.png``: loss, accuracy and learning rate of a training log
against iterations and seconds (needs matplotlib: ``pip install 'netdef[plot]'``)."""

HELP = "plot loss, accuracy and learning rate of a training log (needs matplotlib)"


def add_arguments(p):
    p.add_argument("logfile_path", help="a training log (Caffe's or netdef's)")
    p.add_argument("output", help="the image to write (.png, .svg, .pdf)")
    p.add_argument("--title", default=None, help="figure title (default: the log's name)")


def run(args):
    import os

    from netdef.logparse import parse_log, plot_log

    train, test = parse_log(args.logfile_path)
    if not train and not test:
        from netdef.errors import DataError

        raise DataError(f"{args.logfile_path}: no train or test outputs to plot")
    plot_log(train, test, args.output, title=args.title or os.path.basename(args.logfile_path))
    print(f"wrote {args.output}")
    return 0
