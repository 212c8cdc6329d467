"""The one ``netdef`` program: Caffe's tools as subcommands.

Each subcommand lives in ``tools/<name>.py`` (installed as ``netdef.tools.<name>``) and
exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.  Flags
follow Caffe's spelling; both ``-solver x`` and ``--solver=x`` are accepted.
"""

import argparse
import importlib
import os
import sys

# subcommand name -> module name
SUBCOMMANDS = {
    "train": "train",
    "test": "test",
    "time": "time",
    "device_query": "device_query",
    "convert_mnist_data": "convert_mnist_data",
    "convert_imageset": "convert_imageset",
    "compute_image_mean": "compute_image_mean",
    "convert_hdf5": "convert_hdf5",
    "extract_features": "extract_features",
    "upgrade_net_proto_text": "upgrade_net_proto_text",
    "upgrade_net_proto_binary": "upgrade_net_proto_binary",
    "upgrade_solver_proto_text": "upgrade_solver_proto_text",
    "zoo": "zoo",
    "download_model_binary": "download_model_binary",
    "classify": "classify",
    "draw": "draw",
    "summary": "summary",
    "parse_log": "parse_log",
    "plot_log": "plot_log",
}


def _available():
    found = {}
    for name, module in SUBCOMMANDS.items():
        try:
            found[name] = importlib.import_module(f"netdef.tools.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"netdef.tools.{module}":
                raise
    return found


def normalize_flags(argv):
    """Accept Caffe/gflags spelling: ``-flag value`` and ``-flag=value`` become ``--flag``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 \
                and not _looks_numeric(arg):
            arg = "-" + arg
        out.append(arg)
    return out


def _looks_numeric(arg):
    try:
        float(arg)
        return True
    except ValueError:
        return False


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors end in the one ``netdef: error:`` line (exit 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"netdef: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser(tools):
    parser = _Parser(
        prog="netdef",
        description="Caffe's command-line tools, reborn in Python.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in tools.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show Python tracebacks for errors")
        p.add_argument("--allow-python-layers", "--allow_python_layers", action="store_true",
                       dest="allow_python_layers",
                       help="run `type: \"Python\"` layers named by the prototxt (this "
                            "imports and runs their module's code)")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    from netdef.errors import NetdefError

    argv = normalize_flags(sys.argv[1:] if argv is None else list(argv))
    tools = _available()
    parser = build_parser(tools)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args.debug or bool(os.environ.get("NETDEF_DEBUG"))
    from netdef.layers import python_layer

    # A prototxt from elsewhere runs no code unless the user says so; the switch is put
    # back afterwards so a program calling main() keeps pycaffe's behaviour.
    previous = python_layer.python_layers_switch()
    python_layer.allow_python_layers(args.allow_python_layers)
    try:
        return int(args._run(args) or 0)
    except NetdefError as exc:
        if debug:
            raise
        lines = str(exc).splitlines() or [type(exc).__name__]
        print(f"netdef: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(line, file=sys.stderr)
        return exc.exit_code
    except MemoryError:
        if debug:
            raise
        print("netdef: error: out of memory (the net or data is larger than this machine "
              "can hold; reduce the batch size or input shape)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netdef: interrupted", file=sys.stderr)
        return 130
    finally:
        python_layer.allow_python_layers(previous)


if __name__ == "__main__":
    sys.exit(main())
