"""The resume sidecar: what a Caffe snapshot leaves out, so a resumed run continues exactly.

Caffe's ``.solverstate`` holds the iteration, the learning-rate step and the update
history; on restore its data layers start again at their first record and every random
stream starts afresh.  Next to each solver state netdef writes one more file,

    ``<prefix>_iter_<N>.solverstate.netdef``   (for ``.solverstate`` and ``.solverstate.h5``)

a JSON document that Caffe never reads::

    {"format": "netdef-resume", "version": 1, "iter": N,
     "solverstate": "<basename of the state file it belongs to>",
     "nets": {"train": {layer name: {"type": ..., "state": {...}}},
              "test/0": {...}, ...}}

A layer's state is what its ``get_resume_state()`` returns (data layers: the number of
batches consumed -- batch k is a pure function of the layer's seed and k, so that is enough
-- and MemoryData its row cursor); any other layer contributes the state of its random
generator (Dropout masks, DummyData fillers, stochastic pooling).  Restoring hands each
state back through ``set_resume_state()``, or sets the generator's state.

The sidecar is written before the ``.solverstate`` (both atomically), so a state file that
netdef wrote always has its sidecar.  A state without one -- Caffe's own snapshots -- still
restores, with data layers at their first batch, as Caffe does.
"""

import json
import os

from ..atomic import atomic_write
from ..errors import SolverError
from ..log import logger

FORMAT, VERSION = "netdef-resume", 1
SUFFIX = ".netdef"


def sidecar_path(state_path):
    """``x.solverstate`` and ``x.solverstate.h5`` -> ``x.solverstate.netdef``."""
    base = state_path[:-3] if state_path.endswith(".h5") else state_path
    return base + SUFFIX


def _keyed_layers(net):
    """(key, layer): the layer's name; a repeated name (Caffe allows them) gets "#k"."""
    seen = {}
    for name, layer in zip(net._layer_names, net.layers):
        k = seen.get(name, 0)
        seen[name] = k + 1
        yield (name if k == 0 else f"{name}#{k}"), layer


def collect_net(net):
    """{layer name: {"type", "state"}} for every layer with state outside its blobs."""
    out = {}
    for name, layer in _keyed_layers(net):
        get = getattr(layer, "get_resume_state", None)
        if get is not None:
            state = get()
        elif getattr(layer, "rng", None) is not None:
            state = {"rng": layer.rng.bit_generator.state}
        else:
            continue
        out[name] = {"type": layer.type, "state": state}
    return out


def restore_net(net, states, where):
    """Hand each saved state back to the layer of the same name and type."""
    layers = dict(_keyed_layers(net))
    for name, entry in states.items():
        layer = layers.get(name)
        if layer is None or layer.type != entry.get("type"):
            logger.warning("%s: no %s layer named '%s' in this net; its saved state is "
                           "ignored", where, entry.get("type"), name)
            continue
        state = entry["state"]
        size = state.get("batch_size")
        if size is not None and size != getattr(layer, "batch_size", size):
            logger.warning("%s: layer '%s' now reads batches of %s, the run that saved it "
                           "read %s: batches will not line up with that run", where, name,
                           layer.batch_size, size)
        setter = getattr(layer, "set_resume_state", None)
        if setter is not None:
            setter(state)
        elif "rng" in state and getattr(layer, "rng", None) is not None:
            try:
                layer.rng.bit_generator.state = state["rng"]
            except (TypeError, ValueError, KeyError) as exc:
                raise SolverError(f"{where}: layer '{name}': saved random state does not fit "
                                  f"its generator: {exc}") from exc


def collect(solver):
    """The sidecar's ``nets`` part for a solver's train net and test nets."""
    nets = {"train": collect_net(solver.net)}
    for i, net in enumerate(solver.test_nets):
        nets[f"test/{i}"] = collect_net(net)
    return nets


def write(path, iteration, state_file, nets):
    doc = {"format": FORMAT, "version": VERSION, "iter": int(iteration),
           "solverstate": os.path.basename(state_file), "nets": nets}
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


def read(path):
    """The sidecar document at ``path``; SolverError when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise SolverError(f"'{path}' is not a readable netdef resume file: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SolverError(f"'{path}' is not a netdef resume file (no \"format\": \"{FORMAT}\")")
    if doc.get("version", 0) > VERSION:
        raise SolverError(f"'{path}' was written by a newer netdef (version {doc['version']}; "
                          f"this one reads {VERSION})")
    return doc


def restore(solver, state_path, iteration):
    """Apply the sidecar of ``state_path`` (if any) to the solver's nets; True if applied."""
    path = sidecar_path(state_path)
    if not os.path.exists(path):
        logger.info("No %s beside %s: data layers start at their first batch (as Caffe)",
                    os.path.basename(path), state_path)
        return False
    doc = read(path)
    if doc.get("iter") != iteration:
        logger.warning("%s is for iteration %s but the solver state is at %d: ignored", path,
                       doc.get("iter"), iteration)
        return False
    nets = doc.get("nets", {})
    restore_net(solver.net, nets.get("train", {}), f"{path} (train net)")
    for i, net in enumerate(solver.test_nets):
        restore_net(net, nets.get(f"test/{i}", {}), f"{path} (test net #{i})")
    logger.info("Restored data cursors and random streams from %s", path)
    return True
