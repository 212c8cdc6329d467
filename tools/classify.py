"""``netdef classify IMAGE... --model deploy.prototxt --weights W``: pycaffe's classify.py.

Images (files, folders of images, or a .npy of H x W x C images) go through
``netdef.Classifier`` (ten crops averaged, unless --center-only) and the top-k classes
are printed with their names from --labels (e.g. ILSVRC's synset_words.txt).
"""

HELP = "classify images with a trained net; print the top-k classes"

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


def add_arguments(p):
    p.add_argument("inputs", nargs="+", help="image files, folders of images, or a .npy")
    p.add_argument("--model", "--model_def", dest="model", required=True,
                   help="deploy prototxt")
    p.add_argument("--weights", "--pretrained_model", dest="weights", default="",
                   help="trained .caffemodel")
    p.add_argument("--labels", default="", help="class names, one per line (synset_words.txt)")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=5)
    p.add_argument("--images-dim", "--images_dim", dest="images_dim", default="",
                   help="H,W images are resized to before cropping (default: the net's input)")
    p.add_argument("--mean-file", "--mean_file", dest="mean_file", default="",
                   help=".npy or .binaryproto mean (reduced per channel when its size differs)")
    p.add_argument("--mean", default="", help="per-channel mean values, e.g. 104,117,123")
    p.add_argument("--raw-scale", "--raw_scale", dest="raw_scale", type=float, default=255.0,
                   help="multiply [0,1] pixels by this first (default 255)")
    p.add_argument("--input-scale", "--input_scale", dest="input_scale", type=float,
                   default=None, help="multiply by this after the mean")
    p.add_argument("--channel-swap", "--channel_swap", dest="channel_swap", default=None,
                   help="channel order into the net (default 2,1,0 for colour: RGB -> BGR)")
    p.add_argument("--center-only", "--center_only", dest="center_only", action="store_true",
                   help="one centre crop instead of ten crops averaged")
    p.add_argument("--output", default="", help="also save predictions: .npy or .json")


def _ints(text):
    return [int(v) for v in text.replace("x", ",").split(",") if v.strip()]


def _images(inputs):
    import os

    from netdef.errors import UsageError

    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += sorted(os.path.join(item, f) for f in os.listdir(item)
                            if f.lower().endswith(IMAGE_EXTS))
        elif os.path.exists(item):
            files.append(item)
        else:
            raise UsageError(f"no such image or folder: {item}")
    if not files:
        raise UsageError("no images found in " + ", ".join(inputs))
    return files


def run(args):
    import json

    import numpy as np

    from netdef import io as nio
    from netdef.atomic import atomic_write
    from netdef.classifier import Classifier, load_mean, read_labels, top_k

    clf = Classifier(args.model, args.weights or None,
                     image_dims=_ints(args.images_dim) or None)
    in_ = clf.inputs[0]
    channels = clf.blobs[in_].shape[1]
    if args.mean_file:
        clf.transformer.set_mean(in_, load_mean(args.mean_file, channels, clf.crop_dims))
    elif args.mean:
        clf.transformer.set_mean(in_, np.array([float(v) for v in args.mean.split(",")]))
    swap = args.channel_swap
    if swap is None:
        swap = "2,1,0" if channels == 3 else ""
    if _ints(swap):
        clf.transformer.set_channel_swap(in_, _ints(swap))
    clf.transformer.set_raw_scale(in_, args.raw_scale)
    if args.input_scale is not None:
        clf.transformer.set_input_scale(in_, args.input_scale)
    if len(args.inputs) == 1 and args.inputs[0].endswith(".npy"):
        names = [f"{args.inputs[0]}[{i}]" for i in range(len(np.load(args.inputs[0])))]
        images = list(np.load(args.inputs[0]))
    else:
        names = _images(args.inputs)
        images = [nio.load_image(f, color=channels != 1) for f in names]
    predictions = clf.predict(images, oversample=not args.center_only)
    labels = read_labels(args.labels) if args.labels else None
    report = []
    for name, probs in zip(names, predictions):
        best = top_k(probs, args.top_k, labels)
        print(name)
        for _, p, label in best:
            print(f"  {p:.4f}  {label}")
        report.append({"image": name, "top": [{"class": i, "probability": p, "label": lab}
                                              for i, p, lab in best]})
    if args.output.endswith(".npy"):
        with atomic_write(args.output) as f:
            np.save(f, predictions)
    elif args.output:
        with atomic_write(args.output, "w") as f:
            json.dump(report, f, indent=1)
    return 0
