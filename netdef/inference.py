"""The inference fast path: an opt-in plan for full forwards of TEST nets.

``Net.optimize_for_inference()`` builds an ``InferencePlan``.  It changes nothing a
pycaffe user can see after a full forward, and nothing at all for any other call:

* Fusion.  A Convolution followed, in place on its top, by BatchNorm (stored
  statistics), Scale and/or ReLU runs as one *clone* of the convolution: the affine maps
  folded into a private copy of W and b, the ReLU applied in the conv's output pass.  The
  in-place blob ends up holding what Caffe's would after the whole chain, so
  ``net.blobs`` is unchanged.  The net's own layers and parameter blobs are never
  modified: partial forwards (``start``/``end``), ``net.params``, ``save`` and
  ``copy_from`` see and use the original, unfused layers.  A clone that only fuses a
  ReLU uses the original parameter Blobs themselves, so net surgery through
  ``net.params`` reaches it at once; a folded clone holds a copy, refreshed after any
  read of ``net.params`` or ``net.layers`` / ``net.layer_dict``, any weight load and
  ``refresh()``.
* Sibling 1x1 convolutions.  1x1 convolutions (stride 1, no padding, one group) that
  read the same buffer -- an Inception module's 1x1, 3x3_reduce and 5x5_reduce -- run
  as one GEMM with their filters stacked (small GEMMs run well below the SGEMM rate:
  GoogLeNet's 16-48-filter reduces at 20-35 GFLOP/s against ~100), then one bias (+ fused
  ReLU) pass per member into its own top.  Members later in the layer order move up to
  the first one when no layer in between writes the shared input or touches their
  tops.  The stacked filters are a copy, refreshed as the folded clones' are.
* A tight loop.  Layers whose output shapes follow from their bottoms' shapes
  (``SHAPE_PURE``) are reshaped only when an input blob's shape changed; Split, Input,
  in-place TEST Dropout and Silence, which compute nothing in TEST, are skipped.  In
  the plan's forwards, convolutions reuse their transformed (Winograd) filters on the
  plan's word, the refresh signal above, instead of comparing their weights' bits with
  the last transformed copy every forward.
* Memory (``reuse_memory=True``, a further opt-in).  Intermediate blobs share buffers
  once every consumer of the earlier one has run (a liveness plan over the layer order),
  so their ``net.blobs[...].data`` no longer hold their values after a forward; outputs,
  inputs and the names in ``keep`` keep their own buffers.  (A TEST MAX pooling writes
  no argmax mask at all, so masks need no sharing.)  A Concat of whole blocks (channels
  at batch 1) gets its bottoms as views of its top, so it copies nothing.

Backward after an optimized forward runs the net's own layers forward once more (the
fused layers did not leave what their backward reads); with shared memory it is refused.

Why opt-in rather than automatic: reading the weights of a folded layer cannot be
noticed cheaply (a checksum per forward costs a real fraction of one), and buffer reuse
breaks reading intermediate blobs (``extract_features``).  The plan therefore states
its contract where it is asked for; the classifier, the ``classify`` tool and the
inference benchmark opt in.
"""

import numpy as np

from .blob import Blob
from .errors import LayerError
from .kernels import conv as KC
from .layer import create_layer
from .log import logger
from .proto import caffe_pb2

TEST = caffe_pb2.TEST

# Layer types whose reshape depends only on bottom shapes and parameters (not on data,
# files or Python code), so reshaping once per input shape is exact.
SHAPE_PURE = frozenset({
    "AbsVal", "BNLL", "BatchNorm", "Bias", "Clip", "Concat", "Convolution", "Crop",
    "Deconvolution", "Dropout", "ELU", "Eltwise", "Exp", "Flatten", "InnerProduct", "Input",
    "LRN", "Log", "MVN", "PReLU", "Pooling", "Power", "ReLU", "Reshape", "Scale", "Sigmoid",
    "Silence", "Slice", "Softmax", "Split", "Swish", "TanH", "Threshold", "Tile",
})


# -- fusion ------------------------------------------------------------------------
class FusedConv:
    """A Convolution and the in-place layers after it that one clone of it computes."""

    def __init__(self, index, conv, members, relu_slope, batch_norm, scale):
        self.index = index              # the conv's position in net.layers
        self.conv = conv
        self.members = members          # positions of the absorbed in-place layers
        self.relu_slope = relu_slope    # None: no ReLU fused
        self.batch_norm = batch_norm    # BatchNorm layer folded into W, b (or None)
        self.scale = scale              # Scale layer folded into W, b (or None)
        self.clone = None

    @property
    def folds(self):
        return self.batch_norm is not None or self.scale is not None


def _in_place_on(net, j, blob):
    """Layer j reads and writes exactly ``blob`` (one bottom, one top, in place)."""
    bottoms, tops = net.bottom_vecs[j], net.top_vecs[j]
    return len(bottoms) == 1 and len(tops) == 1 and bottoms[0] is blob and tops[0] is blob


def find_fusions(net):
    """Conv [-> BatchNorm] [-> Scale] [-> ReLU], each consecutive and in place on the
    conv's top; only chains that absorb at least one layer are returned."""
    fusions = []
    layers = net.layers
    i = 0
    while i < len(layers):
        conv = layers[i]
        if conv.type != "Convolution" or len(net.top_vecs[i]) != 1 \
                or not hasattr(conv, "fuse_relu"):
            i += 1
            continue
        top = net.top_vecs[i][0]
        j = i + 1
        members, bn, scale, slope = [], None, None, None
        if j < len(layers) and layers[j].type == "BatchNorm" and _in_place_on(net, j, top) \
                and layers[j].use_global_stats and len(layers[j].blobs) == 3:
            bn = layers[j]
            members.append(j)
            j += 1
        if j < len(layers) and layers[j].type == "Scale" and _in_place_on(net, j, top) \
                and _per_channel_scale(layers[j], top):
            scale = layers[j]
            members.append(j)
            j += 1
        if j < len(layers) and layers[j].type == "ReLU" and _in_place_on(net, j, top):
            slope = float(layers[j].negative_slope)
            members.append(j)
            j += 1
        if members:
            fusions.append(FusedConv(i, conv, members, slope, bn, scale))
        i = j
    return fusions


def _per_channel_scale(layer, top):
    """A Scale with a learned (C,) operand on axis 1 of an N-d blob (N >= 2)."""
    return (len(layer.blobs) >= 1 and top.num_axes >= 2
            and layer.axis in (1, 1 - top.num_axes)
            and layer.blobs[0].shape == (top.shape[1],)
            and all(b.shape == (top.shape[1],) for b in layer.blobs[1:]))


def affine_of(batch_norm, scale, channels):
    """(a, c): the per-channel map x -> a x + c that BatchNorm (stored statistics) then
    Scale apply, computed in float64 from the layers' current blobs."""
    a = np.ones(channels)
    c = np.zeros(channels)
    if batch_norm is not None:
        mean, var, factor = (b.data.astype(np.float64) for b in batch_norm.blobs)
        s = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        inv_std = 1.0 / np.sqrt(var * s + float(batch_norm.eps))
        a, c = inv_std, -mean * s * inv_std
    if scale is not None:
        gamma = scale.blobs[0].data.astype(np.float64)
        a, c = a * gamma, c * gamma
        if scale.bias_index is not None:
            c = c + scale.blobs[scale.bias_index].data
    return a.astype(np.float32), c.astype(np.float32)


def build_clone(net, fusion):
    """A Convolution set up on the original's bottom and top that computes the chain."""
    conv = fusion.conv
    if fusion.folds:
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(conv.layer_param)
        clone = create_layer(lp, rng=conv.rng)
        clone.blobs = [Blob(b.shape, name=b.name) for b in conv.blobs]
    else:
        clone = create_layer(conv.layer_param, rng=conv.rng)
        clone.blobs = conv.blobs        # the very same parameter Blobs: surgery reaches it
    clone.layer_setup(net.bottom_vecs[fusion.index], net.top_vecs[fusion.index])
    clone.param_propagate_down = [False] * len(clone.blobs)
    if fusion.relu_slope is not None:
        clone.fuse_relu(fusion.relu_slope)
    fusion.clone = clone
    if fusion.folds:
        refold(fusion)
    return clone


def refold(fusion):
    """Copy the original W and b into the clone and fold the current affine map in."""
    conv, clone = fusion.conv, fusion.clone
    if len(clone.blobs) > len(conv.blobs):          # a bias the fold created earlier
        clone.blobs[1].data[...] = 0.0
    for mine, theirs in zip(clone.blobs, conv.blobs, strict=False):
        mine.data[...] = theirs.data
    a, c = affine_of(fusion.batch_norm, fusion.scale, conv.num_output)
    clone.fold_affine(a, c)


# -- sibling 1x1 convolutions -------------------------------------------------------
class SiblingConvs:
    """1x1 convolutions that read one buffer, run as one GEMM (see the module docstring).

    ``layers`` are the layers that compute them (fused clones where there are), each with
    one bottom (all sharing a buffer) and one top.  Called like a layer's forward with
    (bottoms, tops) of the members in order."""

    def __init__(self, layers):
        self.layers = layers
        ends = np.cumsum([0] + [layer.num_output for layer in layers])
        self.rows = list(zip(ends[:-1], ends[1:], strict=True))
        self.weights = None
        self._scratch = np.zeros(0, np.float32)
        self.refresh()

    def refresh(self):
        """Stack the members' current filters (after any refold)."""
        self.weights = np.concatenate([layer.blobs[0].data.reshape(layer.num_output, -1)
                                       for layer in self.layers])

    def forward(self, bottoms, tops):
        x = bottoms[0].data
        num, channels = x.shape[0], x.shape[1]
        positions = x.size // max(num * channels, 1)
        x = x.reshape(num, channels, positions)
        total = self.weights.shape[0]
        if self._scratch.size < total * positions:
            self._scratch = np.zeros(total * positions, np.float32)
        out = self._scratch[: total * positions].reshape(total, positions)
        for n in range(num):
            np.matmul(self.weights, x[n], out=out)
            for (k0, k1), layer, top in zip(self.rows, self.layers, tops, strict=True):
                dst = top.data.reshape(num, k1 - k0, positions)[n:n + 1]
                slope = layer.fused_relu
                KC.cn_to_nc(out[k0:k1], dst, layer._bias(), slope is not None,
                            float(slope or 0.0))


def _sibling_ok(layer, bottoms, tops):
    return (layer.type == "Convolution" and getattr(layer, "is_1x1", False)
            and not layer.transposed and layer.group == 1 and layer.channel_axis == 1
            and len(bottoms) == 1 and len(tops) == 1 and bottoms[0].count > 0)


def find_siblings(order, runs):
    """Groups of positions in ``order`` (only those in ``runs``) of sibling 1x1
    convolutions, each group's later members movable up to its first: between them no
    run layer writes the shared input buffer or reads or writes a member's top."""
    by_input = {}
    for i in runs:
        layer, bottoms, tops = order[i]
        if _sibling_ok(layer, bottoms, tops):
            key = (_address(bottoms[0]), bottoms[0].shape)
            by_input.setdefault(key, []).append(i)
    groups = []
    for key, members in by_input.items():
        first = members[0]
        group = [first]
        for j in members[1:]:
            top = _address(order[j][2][0])
            between = [order[k] for k in runs if first < k < j and k not in group]
            if all(_address(t) != key[0] for _, _, ts in between for t in ts) and all(
                    _address(b) != top for _, bs, ts in between for b in list(bs) + list(ts)):
                group.append(j)
        if len(group) > 1:
            groups.append(group)
    return groups


# -- memory ------------------------------------------------------------------------
def _address(blob):
    return blob.data.__array_interface__["data"][0]


def plan_memory(layer_order, pinned):
    """Give intermediate blobs shared buffers by liveness; returns (bytes saved, the
    blobs given a shared buffer, the Concat layers left with nothing to do).

    Blobs that alias one buffer (Split tops, Flatten/Reshape views, in-place chains) form
    one group, live from its first writer to its last reader.  A group's buffer goes
    back to a pool once its last reader has run, and a group first written later takes
    the smallest pooled buffer that fits (its writer never reads it: strictly later).
    The bottoms of a Concat that joins whole blocks (``_concat_in_place``) become views
    of its top's buffer, so their writers fill the top and the Concat copies nothing."""
    groups = {}                         # buffer address -> [blobs, first, last, pinned]
    for i, (layer, bottoms, tops) in enumerate(layer_order):
        for blob in list(bottoms) + list(tops):
            if blob.count == 0:
                continue
            g = groups.setdefault(_address(blob), [[], i, i, False])
            if all(blob is not m for m in g[0]):
                g[0].append(blob)
            g[2] = i
            if blob.name in pinned or layer.type not in SHAPE_PURE:
                g[3] = True
    parts, joined = _concat_in_place(layer_order, groups)
    inside = {key for placed in parts.values() for key, _ in placed}
    for top, placed in parts.items():       # a joined top is live from its bottoms' writers
        groups[top][1] = min(groups[key][1] for key, _ in placed)
    free = []                           # buffers free to take
    active = []                         # (last reader, buffer) in use
    saved = 0
    planned = []
    for key, (members, first, last, pin) in sorted(groups.items(), key=lambda kv: kv[1][1]):
        if key in inside:
            continue
        count = members[0].count
        if pin or any(m.count != count for m in members):
            buf = None
        else:
            free.extend(buf for end, buf in active if end < first)
            active = [(end, buf) for end, buf in active if end >= first]
            fits = [k for k, buf in enumerate(free) if buf.size >= count]
            if fits:
                buf = free.pop(min(fits, key=lambda k: free[k].size))
                saved += count * 4
            else:
                buf = np.zeros(count, np.float32)
            for m in members:
                m.set_data_buffer(buf[:count])
            planned.extend(members)
            active.append((last, buf))
        whole = members[0].data.reshape(-1) if buf is None else buf
        for part, offset in parts.get(key, ()):
            for m in groups[part][0]:
                m.set_data_buffer(whole[offset:offset + m.count])
                saved += m.count * 4
            planned.extend(groups[part][0])
    return saved, planned, joined


def _concat_in_place(layer_order, groups):
    """Concats whose bottoms can be written straight into their top: a join along an
    axis with a single block before it (channels at batch 1), where each bottom is a
    distinct, unpinned buffer group that the Concat reads last and the top a group the
    Concat writes first.  Returns ({top address: [(bottom address, offset)]}, the Concat
    layers)."""
    parts, joined, taken = {}, [], set()
    for i, (layer, bottoms, tops) in enumerate(layer_order):
        if layer.type != "Concat" or len(bottoms) < 2 or getattr(layer, "outer", 0) != 1:
            continue
        top = _address(tops[0])
        keys = [_address(b) for b in bottoms]
        if groups.get(top, [None, -1])[1] != i or len(set(keys + [top])) != len(keys) + 1:
            continue
        placed, offset = [], 0
        for blob, key in zip(bottoms, keys, strict=True):
            g = groups.get(key)
            if (g is None or g[3] or g[1] >= i or g[2] != i or key in taken or key in parts
                    or any(m.count != blob.count for m in g[0])):
                break
            placed.append((key, offset))
            offset += blob.count
        else:
            if offset == tops[0].count:
                parts[top] = placed
                joined.append(layer)
                taken.update(keys)
    return parts, joined


# -- the plan ------------------------------------------------------------------------
class InferencePlan:
    """See the module docstring.  Built and driven by ``Net``."""

    def __init__(self, net, fuse=True, reuse_memory=False, keep=()):
        if net.phase != TEST:
            raise LayerError(f"optimize_for_inference: net '{net.name}' is a TRAIN net; "
                             "only TEST nets can be optimized (training needs every layer's "
                             "backward and every blob's values)")
        self.net = net
        self.fusions = find_fusions(net) if fuse else []
        by_index = {f.index: f for f in self.fusions}
        absorbed = {j for f in self.fusions for j in f.members}
        self.static = all(layer.type in SHAPE_PURE for layer in net.layers)
        self.inputs = [blob for i, layer in enumerate(net.layers) if layer.type == "Input"
                       for blob in net.top_vecs[i]]
        order = []                      # (layer, bottoms, tops) as the plan runs them
        for i, layer in enumerate(net.layers):
            f = by_index.get(i)
            if f is not None:
                layer = build_clone(net, f)
            order.append((layer, net.bottom_vecs[i], net.top_vecs[i]))
        run = [i for i, (layer, b, t) in enumerate(order)
               if i not in absorbed and not _idle_in_test(layer, b, t)]
        running = set(run)
        self.runs = [(layer.reshape, layer.forward if i in running else None, b, t)
                     for i, (layer, b, t) in enumerate(order)]
        groups = find_siblings(order, run) if fuse and self.static else []
        self.siblings = [SiblingConvs([order[i][0] for i in g]) for g in groups]
        first_of = {g[0]: (g, sib) for g, sib in zip(groups, self.siblings, strict=True)}
        moved = {i for g in groups for i in g[1:]}
        self.order, self.steps = [], []
        for i in range(len(order)):
            if i in moved:
                continue
            if i in first_of:
                g, sib = first_of[i]
                self.order.extend(order[j] for j in g)
                self.steps.append((sib.forward, order[i][1], [order[j][2][0] for j in g]))
                continue
            self.order.append(order[i])
            if i in running:
                layer, b, t = order[i]
                self.steps.append((layer.forward, b, t))
        self.reshapes = [(layer.reshape, b, t) for layer, b, t in self.order]
        self.tracked = [layer for layer, _, _ in self.order if hasattr(layer, "forget_filters")]
        self.reuse_memory = bool(reuse_memory)
        if self.reuse_memory and not self.static:
            odd = sorted({layer.type for layer in net.layers if layer.type not in SHAPE_PURE})
            logger.warning("optimize_for_inference: not reusing blob memory in net '%s': its "
                           "shapes are not fixed by its inputs (layer types %s)", net.name,
                           ", ".join(odd))
            self.reuse_memory = False
        self.kept = set(keep or ()) | set(net.outputs) | set(net.inputs) | {
            name for name, w in net.blob_loss_weights.items() if w}
        unknown = [n for n in keep or () if n not in net.blobs]
        if unknown:
            raise LayerError(f"optimize_for_inference: net '{net.name}' has no blob "
                             f"'{unknown[0]}' to keep")
        self.saved_bytes = 0
        self._planned = []
        self._steps = self.steps        # the steps run at the current shapes
        self._shapes = None
        self._stale = False
        logger.info("Optimized net '%s' for inference: %d convolutions fused (%d layers "
                    "absorbed), %d groups of sibling 1x1 convolutions, %d steps for %d "
                    "layers%s", net.name, len(self.fusions), len(absorbed),
                    len(self.siblings), len(self.steps), len(net.layers),
                    ", blob memory reused" if self.reuse_memory else "")

    def invalidate(self):
        """The original weights may have changed: refold (and restack) before the next
        forward, and have the convolutions transform their filters again."""
        if self.tracked or self.siblings or any(f.folds for f in self.fusions):
            self._stale = True

    def refresh(self):
        for layer in self.tracked:
            layer.forget_filters()
        for f in self.fusions:
            if f.folds:
                refold(f)
        for sib in self.siblings:
            sib.refresh()
        self._stale = False

    def forward(self):
        if self._stale:
            self.refresh()
        for layer in self.tracked:      # only the plan's own forwards trust its tracking
            layer.filters_tracked = True
        try:
            self._run()
        finally:
            for layer in self.tracked:
                layer.filters_tracked = False

    def _run(self):
        if not self.static:
            for reshape, forward, b, t in self.runs:
                reshape(b, t)
                if forward is not None:
                    forward(b, t)
            return
        shapes = [b.shape for b in self.inputs]
        if shapes != self._shapes:
            self._detach()
            for reshape, b, t in self.reshapes:
                reshape(b, t)
            if self.reuse_memory:
                self.saved_bytes, self._planned, joined = plan_memory(self.order, self.kept)
                for reshape, b, t in self.reshapes:     # layers that cached views of tops
                    reshape(b, t)
                self._steps = [s for s in self.steps
                               if getattr(s[0], "__self__", None) not in joined]
            self._shapes = shapes
        for forward, b, t in self._steps:
            forward(b, t)

    @property
    def shares_memory(self):
        """Whether blobs currently share buffers by the memory plan."""
        return bool(self._planned)

    def _detach(self):
        """Own buffers again for the blobs of the last memory plan, so that a new plan
        (new shapes) starts from distinct buffers; values are kept."""
        for blob in self._planned:
            blob.set_data_buffer(blob.data.reshape(-1).copy())
        self._planned = []
        self._steps = self.steps

    def release(self):
        """Undo the memory plan: every blob owns its buffer again (values kept)."""
        self._detach()
        self._shapes = None

    def forget_shapes(self):
        """Reshape everything at the next forward (after a plain reshape or forward)."""
        self._shapes = None


def _idle_in_test(layer, bottoms, tops):
    """Layers whose TEST forward computes nothing once reshape has run."""
    if layer.type in ("Input", "Silence", "Split"):
        return True
    if layer.type == "Dropout":
        return bottoms[0] is tops[0]
    return False
