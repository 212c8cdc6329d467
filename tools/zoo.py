"""``netdef zoo list|info|download|publish|serve``: the local model zoo.

The zoo is --zoo (a directory, file:// or http(s):// URL), else $NETDEF_ZOO, else the
checkout's ``models/`` folder (``~/.netdef/zoo`` when there is none).
"""

import sys

HELP = "list, inspect, download, publish and serve models of the model zoo"


def add_arguments(p):
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)

    def with_zoo(q):
        q.add_argument("--zoo", default=None,
                       help="zoo directory or URL (default: $NETDEF_ZOO, else the local zoo)")
        return q

    with_zoo(sub.add_parser("list", help="models: name, size, weights, source"))
    info = with_zoo(sub.add_parser("info", help="one model's front matter, files and readme"))
    info.add_argument("name")
    dl = with_zoo(sub.add_parser("download", help="fetch a model (resumes, verifies sha1/sha256)"))
    dl.add_argument("name")
    dl.add_argument("--dest", default="models",
                    help="folder that receives NAME/ (default: ./models)")
    dl.add_argument("--no-progress", "--no_progress", dest="progress", action="store_false",
                    help="no progress bar")
    pub = with_zoo(sub.add_parser("publish", help="add a model folder and its weights to a "
                                                  "local zoo, with computed checksums"))
    pub.add_argument("model_dir", help="folder with readme.md (front matter) and prototxts")
    pub.add_argument("--weights", required=True, help="the trained .caffemodel")
    pub.add_argument("--name", default=None, help="model name (default: the folder's name)")
    serve = sub.add_parser("serve", help="serve a zoo directory read-only over HTTP")
    serve.add_argument("directory")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--bind", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--quiet", action="store_true", help="no request log")


def run(args):
    return ACTIONS[args.zoo_command](args)


def _list(args):
    from netdef.zoo import Zoo, format_size, weights_file

    zoo = Zoo(args.zoo)
    rows = []
    for name in zoo.names():
        entry = zoo.entry(name)
        size = sum(f["size"] for f in entry["files"])
        if weights_file(entry) is not None:
            has, source = "yes", "zoo"
        elif entry.get("caffemodel_url"):
            has, source = "url", entry["caffemodel_url"]
        else:
            has, source = "no", "-"
        rows.append((name, format_size(size), has, source))
    print(f"zoo: {zoo.location}")
    if not rows:
        print("(no models)")
        return 0
    widths = [max(len(r[i]) for r in rows + [("NAME", "SIZE", "WEIGHTS", "SOURCE")])
              for i in range(3)]
    for r in [("NAME", "SIZE", "WEIGHTS", "SOURCE")] + rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def _info(args):
    from netdef.zoo import Zoo, format_size, weights_file

    zoo = Zoo(args.zoo)
    entry = zoo.entry(args.name)
    meta, body = zoo.readme(args.name)
    print(f"model: {args.name}")
    print(f"zoo: {zoo.location}")
    for key in ("name", "caffemodel", "caffemodel_url", "license", "sha1", "sha256"):
        if meta.get(key) or entry.get(key):
            print(f"{key}: {meta.get(key) or entry.get(key)}")
    for key in sorted(set(meta) - {"name", "caffemodel", "caffemodel_url", "license", "sha1",
                                   "sha256"}):
        print(f"{key}: {meta[key]}")
    w = weights_file(entry)
    print("weights: " + (f"in the zoo ({format_size(w['size'])})" if w else
                         "from caffemodel_url" if entry.get("caffemodel_url") else
                         "not published"))
    print("files:")
    for f in entry["files"]:
        check = f" sha256 {f['sha256']}" if f.get("sha256") else ""
        print(f"  {f['path']:<32} {format_size(f['size']):>10}{check}")
    if body.strip():
        print()
        print(body.strip())
    return 0


def _download(args):
    from netdef.zoo import download

    folder = download(args.name, zoo=args.zoo, dest=args.dest, progress=args.progress)
    print(f"{args.name}: downloaded to {folder}")
    return 0


def _publish(args):
    from netdef.zoo import publish, resolve_zoo

    publish(args.model_dir, args.weights, zoo=args.zoo, name=args.name)
    print(f"published to {resolve_zoo(args.zoo)}")
    return 0


def _serve(args):
    from netdef.zoo import make_server

    server = make_server(args.directory, host=args.bind, port=args.port, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"Serving zoo {args.directory} at http://{host}:{port}/ (read-only; Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


ACTIONS = {"list": _list, "info": _info, "download": _download, "publish": _publish,
           "serve": _serve}
