"""Net: a DAG of layers built from a NetParameter, as Caffe's Net.

Build order (Caffe's Net::Init): filter layers by NetState, insert Split layers where a
blob feeds several layers, create and set up every layer (in-place tops reuse the bottom
Blob), wire parameters (sharing by ``param { name }``, lr/decay multipliers), then work out
which layers need backward.  Learnable parameters' data and diffs live in one contiguous
float32 buffer each, so a solver updates them with one kernel and a data-parallel run
all-reduces one array.
"""

from collections import OrderedDict

import numpy as np

from . import rng as rngmod
from .blob import Blob
from .errors import LayerError, NetdefError, ShapeError, WeightsError, layer_context
from .layer import create_layer
from .log import logger
from .proto import caffe_pb2
from .validate import check_before_build

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


# -- NetState filtering ------------------------------------------------------------
def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule: phase, level range, required and forbidden stages."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def filter_net(net_param):
    """A copy of ``net_param`` holding only the layers its ``state`` includes."""
    state = net_param.state
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    for lp in net_param.layer:
        if lp.include and lp.exclude:
            raise LayerError(f"{layer_context(lp)}: specify either include rules or exclude "
                             "rules, not both")
        if lp.include:
            keep = any(state_meets_rule(state, r) for r in lp.include)
        else:
            keep = not any(state_meets_rule(state, r) for r in lp.exclude)
        if keep:
            out.layer.add().CopyFrom(lp)
    return out


# -- Split insertion ---------------------------------------------------------------
def split_layer_name(layer_name, blob_name, top_index):
    return f"{blob_name}_{layer_name}_{top_index}_split"


def split_blob_name(layer_name, blob_name, top_index, split_index):
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"


def insert_splits(net_param):
    """Insert a Split layer after every top read by more than one consumer.

    A consumer is a later bottom reference, or the loss itself when the top carries a
    non-zero loss weight.  Names follow Caffe's ``<blob>_<layer>_<k>_split_<j>``.
    """
    producer = {}  # blob name -> (layer index, top index) of its latest producer
    consumers = {}  # (layer index, top index) -> number of bottom references
    bottom_source = {}  # (layer index, bottom index) -> (layer index, top index)
    loss_weight = {}
    for i, lp in enumerate(net_param.layer):
        for j, name in enumerate(lp.bottom):
            if name not in producer:
                raise LayerError(f"{layer_context(lp)}: unknown bottom blob '{name}' (no "
                                 "earlier layer produces it)")
            src = producer[name]
            bottom_source[(i, j)] = src
            consumers[src] = consumers.get(src, 0) + 1
        for k, name in enumerate(lp.top):
            producer[name] = (i, k)
            if k < len(lp.loss_weight) and lp.loss_weight[k] != 0:
                loss_weight[(i, k)] = lp.loss_weight[k]
    need = {src for src, n in consumers.items() if n + (src in loss_weight) > 1}
    if not need:
        return net_param
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    used = {}
    for i, lp in enumerate(net_param.layer):
        new = out.layer.add()
        new.CopyFrom(lp)
        for j, name in enumerate(lp.bottom):
            src = bottom_source[(i, j)]
            if src in need:
                k = used.get(src, 0)
                used[src] = k + 1
                src_layer = net_param.layer[src[0]].name
                new.bottom[j] = split_blob_name(src_layer, name, src[1], k)
        for k, name in enumerate(lp.top):
            if (i, k) not in need:
                continue
            split = out.layer.add()
            split.name = split_layer_name(lp.name, name, k)
            split.type = "Split"
            split.bottom.append(name)
            n = consumers.get((i, k), 0) + ((i, k) in loss_weight)
            for s in range(n):
                split.top.append(split_blob_name(lp.name, name, k, s))
            if (i, k) in loss_weight:
                split.loss_weight.append(loss_weight[(i, k)])
                split.loss_weight.extend([0.0] * (n - 1))
    return out


def bottom_blobs(lp, available):
    """The Blobs ``lp`` reads, by name; a name no earlier layer produced is an error."""
    missing = [name for name in lp.bottom if name not in available]
    if missing:
        raise LayerError(f"{layer_context(lp)}: unknown bottom blob '{missing[0]}'")
    return [available[name] for name in lp.bottom]


def set_up_layer(layer, lp, bottoms, tops):
    """Caffe's SetUp for one layer: add the tops it makes itself, then set it up, turning
    a failure deep in shape arithmetic into an error naming the layer and bottom shapes."""
    if layer.auto_top_blobs:
        needed = layer.exact_num_top() or layer.min_top_blobs or 0
        while len(tops) < needed:
            tops.append(Blob(name="(automatic)"))
    try:
        layer.layer_setup(bottoms, tops)
    except NetdefError:
        raise
    except (ValueError, IndexError, TypeError, ZeroDivisionError) as exc:
        shapes = ", ".join(f"{b.name}{list(b.shape)}" for b in bottoms)
        raise ShapeError(f"{layer_context(lp)}: cannot set up with bottoms [{shapes}]: "
                         f"{exc}") from exc


class Net:
    """A network of layers; the pycaffe surface (``blobs``, ``params``, ``forward``...).

    ``Net(model, phase)``, ``Net(model, phase, weights=path)`` and pycaffe's older
    ``Net(model, weights_path, phase)`` all work; ``model`` is a path, prototxt text or a
    NetParameter.
    """

    def __init__(self, model, *args, phase=None, weights=None, level=0, stages=None,
                 seed_seq=None, optimize=False):
        for a in args:
            if isinstance(a, (str, bytes)) and weights is None and not _is_phase(a):
                weights = a
            elif phase is None:
                phase = _phase_value(a)
            else:
                raise TypeError("Net(model, phase, weights=...) or Net(model, weights, phase)")
        param, self.source = _load_param(model)
        if phase is None:
            phase = param.state.phase if param.HasField("state") else TEST
        param.state.phase = _phase_value(phase)
        if level:
            param.state.level = level
        if stages:
            param.state.stage.extend(stages)
        self.phase = param.state.phase
        self._seed_seq = seed_seq if seed_seq is not None else rngmod.next_seed_sequence()
        self._init(param)
        if weights:
            for w in str(weights).split(",") if isinstance(weights, str) else weights:
                self.copy_from(w)
        if optimize:
            self.optimize_for_inference()

    # ------------------------------------------------------------------ build
    def _init(self, in_param):
        check_before_build(in_param)  # whole-net checks (netdef/validate.py)
        param = insert_splits(filter_net(in_param))
        self.param = param
        self.name = param.name
        self.debug_info = param.debug_info
        self._layers = []
        self._layer_names = []
        self._inference = None          # InferencePlan, see optimize_for_inference
        self._optimized_forward = False
        self.blobs = OrderedDict()
        self.bottom_vecs, self.top_vecs = [], []
        self.bottom_names, self.top_names = OrderedDict(), OrderedDict()
        self._bottom_ids = []
        self.inputs, self._input_blobs = [], []
        self.blob_loss_weights = OrderedDict()
        self._loss_tops = []  # (blob, weight)
        available = OrderedDict()
        consumed = set()
        names = set()
        for lp in param.layer:
            if lp.name in names:
                # Caffe accepts this (BVLC's own mnist_autoencoder has two 'loss' layers);
                # lookups by name, weight loading included, then see the last one.
                logger.warning("Layer name '%s' is used more than once in net '%s'; lookups "
                               "by name (weights, net.params) use the last one", lp.name,
                               param.name)
            names.add(lp.name)
            lp.phase = self.phase
            if lp.propagate_down and len(lp.propagate_down) != len(lp.bottom):
                raise LayerError(f"{layer_context(lp)}: propagate_down must be given once per "
                                 f"bottom ({len(lp.propagate_down)} given for "
                                 f"{len(lp.bottom)} bottoms)")
            layer = create_layer(lp, rng=rngmod.child_rng(self._seed_seq))
            bottoms = bottom_blobs(lp, available)
            consumed.update(lp.bottom)
            tops = []
            for k, name in enumerate(lp.top):
                if name in lp.bottom:
                    if k >= len(lp.bottom) or lp.bottom[k] != name:
                        raise LayerError(f"{layer_context(lp)}: in-place top '{name}' must sit "
                                         "at the same index as its bottom")
                    tops.append(available[name])
                    continue
                if name in self.blobs:
                    raise LayerError(f"{layer_context(lp)}: top blob '{name}' is produced by "
                                     "multiple layers")
                blob = Blob(name=name)
                self.blobs[name] = blob
                available[name] = blob
                tops.append(blob)
                if lp.type == "Input":
                    self.inputs.append(name)
                    self._input_blobs.append(blob)
            set_up_layer(layer, lp, bottoms, tops)
            for blob, w in zip(tops, layer.loss_weights):
                if w != 0:
                    blob.diff[...] = w
                    self._loss_tops.append((blob, w))
            for blob in tops:
                self.blob_loss_weights[blob.name] = 0.0
            for blob, w in zip(tops, layer.loss_weights):
                self.blob_loss_weights[blob.name] = w
            self._layers.append(layer)
            self._layer_names.append(lp.name)
            self.bottom_vecs.append(bottoms)
            self.top_vecs.append(tops)
            self.bottom_names[lp.name] = list(lp.bottom)
            self.top_names[lp.name] = list(lp.top)
            if logger.isEnabledFor(20):
                logger.info("Setting up %s", lp.name)
                for blob in tops:
                    logger.info("Top shape: %s (%d)", " ".join(map(str, blob.shape)),
                                blob.count)
        self.outputs = [n for n in available if n not in consumed
                        and n not in self.inputs]
        self._wire_params()
        self._plan_backward(param)
        self._layer_dict = OrderedDict(zip(self._layer_names, self._layers))
        logger.info("Network initialization done.")

    def _wire_params(self):
        """Parameter ownership, sharing and multipliers; flat buffers for the owners."""
        self.learnable_params = []
        self.params_lr, self.params_weight_decay = [], []
        self._lr_set, self._decay_set = [], []
        self.param_owner_of = []  # per (layer, param): index into learnable_params
        owners_by_name = {}
        sharers = []
        for layer in self._layers:
            lp = layer.layer_param
            if len(lp.param) > len(layer.blobs):
                raise LayerError(f"{layer_context(lp)}: {len(lp.param)} param specs given for "
                                 f"{len(layer.blobs)} parameter blobs")
            layer.param_propagate_down = [True] * len(layer.blobs)
            owned = []
            for pi, blob in enumerate(layer.blobs):
                spec = lp.param[pi] if pi < len(lp.param) else caffe_pb2.ParamSpec()
                share_name = spec.name
                if share_name and share_name in owners_by_name:
                    oi, owner_layer, owner_pi = owners_by_name[share_name]
                    owner = self.learnable_params[oi]
                    strict = not (spec.HasField("share_mode")
                                  and spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE)
                    if (strict and owner.shape != blob.shape) or owner.count != blob.count:
                        raise ShapeError(
                            f"{layer_context(lp)}: cannot share param '{share_name}' owned by "
                            f"layer '{owner_layer}' (param {owner_pi}): shape {list(owner.shape)}"
                            f" vs {list(blob.shape)}")
                    if spec.HasField("lr_mult"):
                        if self._lr_set[oi] and self.params_lr[oi] != spec.lr_mult:
                            raise LayerError(f"{layer_context(lp)}: shared param '{share_name}' "
                                             "has conflicting lr_mult values")
                        self.params_lr[oi], self._lr_set[oi] = spec.lr_mult, True
                    if spec.HasField("decay_mult"):
                        if self._decay_set[oi] and self.params_weight_decay[oi] != spec.decay_mult:
                            raise LayerError(f"{layer_context(lp)}: shared param '{share_name}' "
                                             "has conflicting decay_mult values")
                        self.params_weight_decay[oi] = spec.decay_mult
                        self._decay_set[oi] = True
                    sharers.append((blob, oi))
                    owned.append(oi)
                    continue
                oi = len(self.learnable_params)
                self.learnable_params.append(blob)
                self.params_lr.append(spec.lr_mult)
                self.params_weight_decay.append(spec.decay_mult)
                self._lr_set.append(spec.HasField("lr_mult"))
                self._decay_set.append(spec.HasField("decay_mult"))
                if share_name:
                    owners_by_name[share_name] = (oi, lp.name, pi)
                owned.append(oi)
            self.param_owner_of.append(owned)
        total = sum(b.count for b in self.learnable_params)
        self.flat_data = np.zeros(total, np.float32)
        self.flat_diff = np.zeros(total, np.float32)
        offset = 0
        for blob in self.learnable_params:
            n = blob.count
            blob.set_data_buffer(self.flat_data[offset:offset + n])
            blob.set_diff_buffer(self.flat_diff[offset:offset + n])
            offset += n
        for blob, oi in sharers:
            blob.share_data(self.learnable_params[oi])
            blob.share_diff(self.learnable_params[oi])
        for li, layer in enumerate(self._layers):
            for pi, oi in enumerate(self.param_owner_of[li]):
                layer.param_propagate_down[pi] = self.params_lr[oi] != 0

    def _plan_backward(self, param):
        """Which layers and bottoms need backward (Caffe's rules, force_backward too)."""
        n = len(self._layers)
        blob_need = {}
        self.layer_need_backward = [False] * n
        self.bottom_need_backward = []
        for i, layer in enumerate(self._layers):
            lp = layer.layer_param
            need = any(layer.param_propagate_down)
            flags = []
            for j, b in enumerate(self.bottom_vecs[i]):
                need = need or blob_need.get(b.name, False)
                flags.append(bool(lp.propagate_down[j]) if lp.propagate_down
                             else blob_need.get(b.name, False))
            self.layer_need_backward[i] = need
            self.bottom_need_backward.append(flags)
            for t in self.top_vecs[i]:
                blob_need[t.name] = need
        # Prune what does not lead to a loss, or whose consumers never propagate back.
        under_loss, skip = set(), set()
        for i in reversed(range(n)):
            layer = self._layers[i]
            tops = self.top_vecs[i]
            contributes = any(w != 0 for w in layer.loss_weights) or any(
                t.name in under_loss for t in tops)
            skip_down = all(t.name in skip for t in tops)
            if self.layer_need_backward[i] and skip_down:
                self.layer_need_backward[i] = False
                self.bottom_need_backward[i] = [False] * len(self.bottom_vecs[i])
            if not contributes:
                self.layer_need_backward[i] = False
            for j, b in enumerate(self.bottom_vecs[i]):
                if contributes:
                    under_loss.add(b.name)
                else:
                    self.bottom_need_backward[i][j] = False
                if not self.bottom_need_backward[i][j]:
                    skip.add(b.name)
        if param.force_backward:
            for i, layer in enumerate(self._layers):
                self.layer_need_backward[i] = True
                self.bottom_need_backward[i] = [
                    f or layer.allow_force_backward(j)
                    for j, f in enumerate(self.bottom_need_backward[i])]
                layer.param_propagate_down = [True] * len(layer.blobs)

    # ------------------------------------------------------------------ run
    def _layer_index(self, name, default):
        if name is None:
            return default
        if name not in self._layer_dict:
            raise LayerError(f"no layer named '{name}' in net '{self.name}'")
        return self._layer_names.index(name)

    def forward_from_to(self, start=0, end=None):
        """Run layers start..end (inclusive); return the weighted loss.

        A full forward of a net optimized for inference runs its plan instead (the same
        blob values, fewer passes); any other range runs the net's own layers."""
        last = len(self._layers) - 1
        end = last if end is None else end
        plan = self._inference
        if plan is not None and start == 0 and end == last and not self.debug_info:
            plan.forward()
            self._optimized_forward = True
            return self._weighted_loss()
        self._optimized_forward = False
        self._forward_layers(start, end)
        return self._weighted_loss()

    def _forward_layers(self, start, end):
        for i in range(start, end + 1):
            # As Caffe's Layer::Forward: reshape first (cheap when nothing changed).
            self._layers[i].reshape(self.bottom_vecs[i], self.top_vecs[i])
            self._layers[i].forward(self.bottom_vecs[i], self.top_vecs[i])
            if self.debug_info:
                self._debug_forward(i)

    def _weighted_loss(self):
        loss = 0.0
        for blob, w in self._loss_tops:
            loss += w * float(blob.data.sum(dtype=np.float64))
        return loss

    def backward_from_to(self, start=None, end=0):
        start = len(self._layers) - 1 if start is None else start
        if self._inference is not None and any(self.layer_need_backward[end:start + 1]):
            self._prepare_backward()
        for i in range(start, end - 1, -1):
            if self.layer_need_backward[i]:
                self._layers[i].backward(self.top_vecs[i], self.bottom_need_backward[i],
                                        self.bottom_vecs[i])
                if self.debug_info:
                    self._debug_backward(i)

    def forward_backward(self):
        loss = self.forward_from_to()
        self.backward_from_to()
        return loss

    def clear_param_diffs(self):
        self.flat_diff.fill(0)

    def reshape(self):
        for i, layer in enumerate(self._layers):
            layer.reshape(self.bottom_vecs[i], self.top_vecs[i])
        if self._inference is not None:
            self._inference.forget_shapes()

    # ------------------------------------------------------------------ inference
    def optimize_for_inference(self, fuse=True, reuse_memory=False, keep=()):
        """Opt in to the inference plan for full forwards of this TEST net (see
        netdef/inference.py): Conv + in-place BatchNorm/Scale/ReLU fused, sibling 1x1
        convolutions stacked into one GEMM, reshapes only when an input shape changes,
        idle layers skipped; with ``reuse_memory``, blobs other than inputs, outputs and
        ``keep`` share buffers (their values are then not kept after a forward).  Partial
        forwards, params, save and weight loading keep using the net's own layers.
        Returns the net."""
        from .inference import InferencePlan

        if self._inference is not None:
            self._inference.release()
            self._inference = None
        self._inference = InferencePlan(self, fuse=fuse, reuse_memory=reuse_memory,
                                        keep=keep)
        return self

    @property
    def inference_plan(self):
        """The InferencePlan of ``optimize_for_inference``, or None."""
        return self._inference

    def _prepare_backward(self):
        """Backward reads state the fused forward did not leave (the unfused layers'
        inputs and buffers): run the net's own layers once more, or refuse when blobs
        share memory (backward needs every intermediate blob)."""
        if self._inference.shares_memory:
            raise NetdefError(f"net '{self.name}': backward through a net optimized with "
                              "reuse_memory=True; its intermediate blobs share buffers. Use "
                              "optimize_for_inference(reuse_memory=False) for nets you "
                              "backpropagate through")
        if not self._optimized_forward:
            return
        if not getattr(self, "_warned_replay", False):
            logger.warning("net '%s': backward after an optimized forward runs the forward "
                           "again unfused (optimize only nets you do not backpropagate "
                           "through)", self.name)
            self._warned_replay = True
        self._forward_layers(0, len(self._layers) - 1)
        self._optimized_forward = False

    def _weights_may_change(self):
        if self._inference is not None:
            self._inference.invalidate()

    @property
    def layers(self):
        self._weights_may_change()      # a caller may edit a layer's blobs through it
        return self._layers

    @property
    def layer_dict(self):
        self._weights_may_change()
        return self._layer_dict

    # pycaffe surface ----------------------------------------------------------
    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Write keyword inputs, run forward, return {output name: data array}."""
        for name, value in kwargs.items():
            if name not in self.blobs:
                raise LayerError(f"forward(): net '{self.name}' has no blob '{name}'")
            blob = self.blobs[name]
            value = np.asarray(value, np.float32)
            if value.shape != blob.shape:
                if value.size != blob.count:
                    raise ShapeError(f"forward(): input '{name}' has shape {value.shape}, the "
                                     f"blob has shape {blob.shape}")
                value = value.reshape(blob.shape)
            blob.data[...] = value
        i0 = self._layer_index(start, 0)
        i1 = self._layer_index(end, len(self._layers) - 1)
        plan = self._inference
        if blobs and plan is not None and plan.reuse_memory:
            lost = [name for name in blobs if name not in plan.kept]
            if lost:
                raise LayerError(f"forward(): blob '{lost[0]}' of net '{self.name}' is not "
                                 "kept by optimize_for_inference(reuse_memory=True); name it "
                                 "in keep=[...]")
        self.forward_from_to(i0, i1)
        outs = set(self.outputs if end is None else self.top_names[self._layer_names[i1]])
        outs.update(blobs or [])
        return {name: self.blobs[name].data for name in outs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Write keyword top diffs, run backward, return {input name: diff array}."""
        for name, value in kwargs.items():
            self.blobs[name].diff[...] = np.asarray(value, np.float32).reshape(
                self.blobs[name].shape)
        i0 = self._layer_index(start, len(self._layers) - 1)
        i1 = self._layer_index(end, 0)
        self.backward_from_to(i0, i1)
        outs = set(self.inputs if end is None else self.bottom_names[self._layer_names[i1]])
        outs.update(diffs or [])
        return {name: self.blobs[name].diff for name in outs}

    def set_input_arrays(self, data, labels, layer=None):
        """pycaffe's: feed a MemoryData layer (the first, or the one named ``layer``) with
        (N, C, H, W) data and N labels (netdef/pycaffe.py)."""
        from .pycaffe import set_input_arrays

        set_input_arrays(self, data, labels, layer)

    @property
    def params(self):
        self._weights_may_change()
        return OrderedDict((name, layer.blobs) for name, layer in
                           zip(self._layer_names, self._layers) if layer.blobs)

    def input_blobs(self):
        return list(self._input_blobs)

    # ------------------------------------------------------------------ weights
    def copy_from(self, path):
        """Load weights by layer name from a caffemodel (binary or HDF5)."""
        from .weights import load_weights

        self.copy_trained_layers(load_weights(path), source=str(path))

    def copy_trained_layers(self, layers, source="weights"):
        """``layers``: [(layer name, [arrays])].  Unknown layers are skipped with a log."""
        from .weights import shapes_match

        self._weights_may_change()
        matched = 0
        with_blobs = 0
        for name, arrays in layers:
            if not arrays:
                continue
            with_blobs += 1
            layer = self._layer_dict.get(name)
            if layer is None:
                logger.info("Ignoring source layer %s", name)
                continue
            matched += 1
            if len(arrays) != len(layer.blobs):
                raise WeightsError(
                    f"{source}: layer '{name}' has {len(arrays)} parameter blobs, the net's "
                    f"{layer.describe()} has {len(layer.blobs)}")
            for k, (arr, blob) in enumerate(zip(arrays, layer.blobs)):
                if arr is None:  # HDF5 files leave out parameters shared with another layer
                    continue
                if not shapes_match(arr.shape, blob.shape):
                    raise WeightsError(
                        f"{source}: cannot copy param {k} weights from layer '{name}'; shape "
                        f"mismatch. Source param shape is {_fmt(arr.shape)}; target param "
                        f"shape is {_fmt(blob.shape)}. To learn this layer's parameters "
                        "from scratch rather than copying from a saved net, rename the layer.")
                blob.data[...] = np.asarray(arr, np.float32).reshape(blob.shape)
        if with_blobs and not matched:
            raise WeightsError(f"{source}: none of its {with_blobs} layers with weights matches a "
                               f"layer of net '{self.name}' (layer names must agree)")
        return matched

    def share_with(self, other):
        """Use ``other``'s trained parameters (by layer name) without copying."""
        self._weights_may_change()
        for name, layer in zip(other._layer_names, other.layers):
            mine = self._layer_dict.get(name)
            if mine is None or not layer.blobs:
                continue
            if len(mine.blobs) != len(layer.blobs):
                raise WeightsError(f"cannot share layer '{name}': parameter counts differ")
            for a, b in zip(mine.blobs, layer.blobs):
                if a.shape != b.shape:
                    raise ShapeError(f"cannot share layer '{name}': shapes {a.shape} vs "
                                     f"{b.shape}")
                a.share_data(b)

    def to_proto(self, write_diff=False):
        """A NetParameter of this net with every layer's blobs (as Caffe's ToProto)."""
        from .weights import array_to_blob

        out = caffe_pb2.NetParameter()
        out.name = self.param.name
        for layer in self._layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.layer_param)
            del lp.blobs[:]
            for blob in layer.blobs:
                array_to_blob(blob.data, lp.blobs.add(), diff=blob.diff if write_diff else None)
        return out

    def save(self, path, write_diff=False):
        from .weights import save_caffemodel

        save_caffemodel(path, self.to_proto(write_diff))

    def save_hdf5(self, path, write_diff=False):
        from .weights import save_weights_hdf5

        layers = [(n, [b.data for b in layer.blobs]) for n, layer in
                  zip(self._layer_names, self._layers) if layer.blobs]
        diffs = [(n, [b.diff for b in layer.blobs]) for n, layer in
                 zip(self._layer_names, self._layers) if layer.blobs] if write_diff else None
        save_weights_hdf5(path, layers, diffs=diffs)

    # ------------------------------------------------------------------ debug
    def _debug_forward(self, i):
        for blob in self.top_vecs[i]:
            logger.info("    [Forward] Layer %s, top blob %s data: %g", self._layer_names[i],
                        blob.name, blob.asum_data() / max(blob.count, 1))
        for k, blob in enumerate(self._layers[i].blobs):
            logger.info("    [Forward] Layer %s, param blob %d data: %g", self._layer_names[i],
                        k, blob.asum_data() / max(blob.count, 1))

    def _debug_backward(self, i):
        for j, blob in enumerate(self.bottom_vecs[i]):
            if self.bottom_need_backward[i][j]:
                logger.info("    [Backward] Layer %s, bottom blob %s diff: %g",
                            self._layer_names[i], blob.name,
                            blob.asum_diff() / max(blob.count, 1))
        for k, blob in enumerate(self._layers[i].blobs):
            logger.info("    [Backward] Layer %s, param blob %d diff: %g", self._layer_names[i],
                        k, blob.asum_diff() / max(blob.count, 1))

    def __repr__(self):
        return f"Net({self.name!r}, phase={'TRAIN' if self.phase == TRAIN else 'TEST'}, " \
               f"{len(self._layers)} layers)"

    # pycaffe's whole-array helpers (netdef/pycaffe.py) -----------------------------------
    def forward_all(self, blobs=None, **kwargs):
        from .pycaffe import forward_all

        return forward_all(self, blobs, **kwargs)

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        from .pycaffe import forward_backward_all

        return forward_backward_all(self, blobs, diffs, **kwargs)

    def load_hdf5(self, path):
        """pycaffe's: weights from an HDF5 file written by ``save_hdf5``."""
        self.copy_from(path)


def _fmt(shape):
    return " ".join(str(d) for d in shape) + f" ({int(np.prod(shape)) if shape else 1})"


def _is_phase(value):
    return isinstance(value, str) and value.upper() in ("TRAIN", "TEST")


def _phase_value(value):
    if isinstance(value, str):
        if value.upper() not in ("TRAIN", "TEST"):
            raise ValueError(f"phase must be TRAIN or TEST, not {value!r}")
        return TRAIN if value.upper() == "TRAIN" else TEST
    value = int(value)
    if value not in (TRAIN, TEST):
        raise ValueError(f"phase must be TRAIN (0) or TEST (1), not {value}")
    return value


def _load_param(model):
    """NetParameter from a path, prototxt text or message (a private, upgraded copy)."""
    from . import prototxt

    if isinstance(model, caffe_pb2.NetParameter):
        param = caffe_pb2.NetParameter()
        param.CopyFrom(model)
        from .upgrade import upgrade_net_param

        upgrade_net_param(param)
        return param, "<NetParameter>"
    if isinstance(model, bytes):
        model = model.decode()
    model = str(model)
    if "\n" in model or "{" in model:
        return prototxt.parse_net_text(model, "<string>"), "<string>"
    return prototxt.read_net_param(model), model
