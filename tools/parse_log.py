"""``netdef parse_log LOG OUTDIR``: Caffe's tools/extra/parse_log.py -- a training log to
``OUTDIR/<log>.train`` and ``OUTDIR/<log>.test`` CSV files."""

HELP = "extract train and test outputs of a training log into CSV files"


def add_arguments(p):
    p.add_argument("logfile_path", help="a training log (Caffe's or netdef's)")
    p.add_argument("output_dir", help="folder for <log>.train and <log>.test")
    p.add_argument("--delimiter", default=",", help="column delimiter (default ',')")
    p.add_argument("--verbose", action="store_true", help="say which files were written")


def run(args):
    from netdef.logparse import parse_log, save_csv_files

    train, test = parse_log(args.logfile_path)
    written = save_csv_files(args.logfile_path, args.output_dir, train, test, args.delimiter)
    if args.verbose or not written:
        for path in written:
            print(f"wrote {path}")
        if not train:
            print("no train rows found (no 'Train net output' lines after an iteration line)")
        if not test:
            print("no test rows found (no 'Test net output' lines after an iteration line)")
    return 0
