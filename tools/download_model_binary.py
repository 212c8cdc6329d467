"""``netdef download_model_binary models/NAME``: Caffe's scripts/download_model_binary.py.

Reads the folder's readme.md front matter (caffemodel, caffemodel_url, sha1/sha256),
downloads the weights next to it -- resuming a cut-off download, verifying the checksums,
writing atomically -- and does nothing when the file is already there and checks out.
Also runs as ``python -m netdef.tools.download_model_binary models/NAME``.
"""

import sys

HELP = "download a model folder's weights from the caffemodel_url of its readme.md"


def add_arguments(p):
    p.add_argument("dirname", help="model folder holding readme.md (e.g. models/caffenet)")
    p.add_argument("--no-progress", "--no_progress", dest="progress", action="store_false",
                   help="no progress bar")


def run(args):
    from netdef.zoo import fetch_weights

    path = fetch_weights(args.dirname, progress=args.progress)
    print(f"weights: {path}")
    return 0


if __name__ == "__main__":
    from netdef.tools.main import main

    sys.exit(main(["download_model_binary", *sys.argv[1:]]))
