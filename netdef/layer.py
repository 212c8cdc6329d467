"""The Layer contract (Caffe's, in Python) and the type registry.

A layer reads its parameters once in ``setup`` into plain attributes; ``reshape``
shapes the tops (cheap, no compute); ``forward`` fills top data; ``backward`` fills
bottom diffs where ``propagate_down[i]`` and ACCUMULATES into its parameter diffs
(``self.blobs[k].diff``) -- the Net clears those once per iteration, which is what
makes ``iter_size`` and weight sharing work.
"""

import difflib

import numpy as np

from .blob import Blob
from .errors import LayerError, layer_context

_REGISTRY = {}


def register(*type_names):
    """Class decorator: register a Layer subclass under one or more type strings."""

    def wrap(cls):
        for name in type_names:
            if name in _REGISTRY and _REGISTRY[name] is not cls:
                raise RuntimeError(f"layer type {name!r} registered twice")
            _REGISTRY[name] = cls
        if cls.type is None:
            cls.type = type_names[0]
        return cls

    return wrap


def layer_type_list():
    """Every registered layer type, sorted (as pycaffe's ``layer_type_list``)."""
    _load_catalogue()
    return sorted(_REGISTRY)


def layer_class(type_name, layer_param=None):
    _load_catalogue()
    cls = _REGISTRY.get(type_name)
    if cls is None:
        near = difflib.get_close_matches(type_name, list(_REGISTRY), n=3, cutoff=0.5)
        where = f"{layer_context(layer_param)}: " if layer_param is not None else ""
        hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise LayerError(f"{where}unknown layer type {type_name!r}.{hint} Known types: "
                         f"{', '.join(sorted(_REGISTRY))}")
    return cls


def create_layer(layer_param, rng=None):
    """Instantiate the registered class for ``layer_param.type``."""
    return layer_class(layer_param.type, layer_param)(layer_param, rng=rng)


def _load_catalogue():
    from . import layers  # noqa: F401  (importing registers every layer)


class Layer:
    """Base class of every layer.  Subclasses override the four methods below."""

    type = None
    # Blob-count rules, checked by ``layer_setup`` (None = no rule).
    exact_num_bottom_blobs = None
    min_bottom_blobs = None
    max_bottom_blobs = None
    exact_num_top_blobs = None
    min_top_blobs = None
    max_top_blobs = None
    equal_num_bottom_top_blobs = False
    # Layers that make extra tops themselves when the prototxt names too few.
    auto_top_blobs = False

    def __init__(self, layer_param, rng=None):
        self.layer_param = layer_param
        self.name = layer_param.name
        self.phase = layer_param.phase
        self.rng = rng if rng is not None else np.random.default_rng()
        self.blobs = []
        self.param_propagate_down = []
        self.loss_weights = []

    # -- the contract ----------------------------------------------------------
    def setup(self, bottom, top):
        """Read parameters, create ``self.blobs`` (weights) with fillers."""

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        """Default: a layer with no gradient (data layers, Accuracy, ...)."""

    # -- what the Net asks ---------------------------------------------------
    def allow_force_backward(self, bottom_index):
        return True

    def exact_num_top(self):
        return self.exact_num_top_blobs

    def describe(self):
        return layer_context(self.layer_param)

    def layer_setup(self, bottom, top):
        """Caffe's SetUp: check blob counts, setup, reshape, set the loss weights."""
        self.check_blob_counts(bottom, top)
        self.setup(bottom, top)
        self.reshape(bottom, top)
        self.set_loss_weights(top)

    def check_blob_counts(self, bottom, top):
        nb, nt = len(bottom), len(top)

        def fail(what):
            raise LayerError(f"{self.describe()}: {what} (bottoms: {nb}, tops: {nt})")

        if self.exact_num_bottom_blobs is not None and nb != self.exact_num_bottom_blobs:
            fail(f"takes {self.exact_num_bottom_blobs} bottom blob(s) as input")
        if self.min_bottom_blobs is not None and nb < self.min_bottom_blobs:
            fail(f"takes at least {self.min_bottom_blobs} bottom blob(s) as input")
        if self.max_bottom_blobs is not None and nb > self.max_bottom_blobs:
            fail(f"takes at most {self.max_bottom_blobs} bottom blob(s) as input")
        exact_top = self.exact_num_top()
        if exact_top is not None and nt != exact_top:
            fail(f"produces {exact_top} top blob(s) as output")
        if self.min_top_blobs is not None and nt < self.min_top_blobs:
            fail(f"produces at least {self.min_top_blobs} top blob(s) as output")
        if self.max_top_blobs is not None and nt > self.max_top_blobs:
            fail(f"produces at most {self.max_top_blobs} top blob(s) as output")
        if self.equal_num_bottom_top_blobs and nb != nt:
            fail("needs as many top blobs as bottom blobs")

    def default_loss_weight(self, top_index):
        """Loss layers return 1 for their first top; everything else 0."""
        return 0.0

    def set_loss_weights(self, top):
        lw = list(self.layer_param.loss_weight)
        if lw and len(lw) != len(top):
            raise LayerError(f"{self.describe()}: loss_weight must be given once per top blob "
                             f"({len(lw)} given for {len(top)} tops)")
        if not lw:
            lw = [self.default_loss_weight(i) for i in range(len(top))]
        self.loss_weights = [float(w) for w in lw]

    def new_param_blob(self, shape, name=""):
        """A parameter blob of ``shape`` (weights), appended to ``self.blobs``."""
        b = Blob(shape, name=name or f"{self.name}/{len(self.blobs)}")
        self.blobs.append(b)
        return b

    # C++-style names that some pycaffe builds expose on layer objects -----------------
    def SetUp(self, bottom, top):  # noqa: N802
        self.layer_setup(bottom, top)

    def Reshape(self, bottom, top):  # noqa: N802
        self.reshape(bottom, top)

    def Forward(self, bottom, top):  # noqa: N802
        """Reshape, forward, and return this layer's weighted loss (as Caffe's Forward)."""
        self.reshape(bottom, top)
        self.forward(bottom, top)
        return sum(w * float(t.data.sum(dtype=np.float64))
                   for w, t in zip(self.loss_weights, top) if w)

    def Backward(self, top, propagate_down, bottom):  # noqa: N802
        self.backward(top, propagate_down, bottom)
