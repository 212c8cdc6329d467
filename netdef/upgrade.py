"""Bring old net and solver definitions up to today's schema, the way Caffe does.

Caffe's NetParameter went through several formats and Caffe still reads them all by
upgrading on load, in this order:

1. V0 (``layers { layer { type: "conv" kernelsize: 5 } }``): separate ``padding``
   layers are folded into the convolution/pooling they feed, then every V0 layer
   becomes a V1 layer (lower-case type names become the V1 enum, flat fields move
   into the matching ``*_param``).
2. Data transformation: ``scale``/``mean_file``/``crop_size``/``mirror`` inside the
   ``data_param``/``image_data_param``/``window_data_param`` of V1 data layers move
   into ``transform_param``.
3. V1 (``layers { type: CONVOLUTION blobs_lr: 1 }``) becomes ``layer { type:
   "Convolution" param { lr_mult: 1 } }``.
4. Net inputs (``input`` + ``input_dim``/``input_shape``) become a first ``Input``
   layer named "input".
5. BatchNorm layers that declare their three statistics as ParamSpecs get
   ``lr_mult: 0 decay_mult: 0`` on each (keeping names, so sharing still works).

Where Caffe stops with a fatal error, these functions raise PrototxtError; where Caffe
logs an error and carries on (a V0 field that makes no sense for its layer type), they
log and carry on too.
"""

import logging

from .errors import PrototxtError
from .proto import caffe_pb2

log = logging.getLogger("netdef")

_V1 = caffe_pb2.V1LayerParameter

# V0 lower-case type names -> V1 LayerType enum names.
V0_TO_V1_TYPE = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# V1 LayerType enum names -> the registered type strings of today's layers.
V1_TO_V2_TYPE = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Where each flat V0 field goes, per V0 layer type: "param_field.field".  A field
# used with a type not listed here is reported and dropped, as Caffe does.
_V0_FIELD_TARGETS = {
    "num_output": {"conv": "convolution_param.num_output",
                   "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term",
                 "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler",
                      "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler",
                    "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size",
                   "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {"data": "data_param.source",
               "hdf5_data": "hdf5_data_param.source",
               "images": "image_data_param.source",
               "window_data": "window_data_param.source",
               "infogain_loss": "infogain_loss_param.source"},
    "batchsize": {"data": "data_param.batch_size",
                  "hdf5_data": "hdf5_data_param.batch_size",
                  "images": "image_data_param.batch_size",
                  "window_data": "window_data_param.batch_size"},
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}

# V0 transformation fields go to transform_param whatever the layer type.
_V0_TRANSFORM_FIELDS = {
    "scale": "scale",
    "meanfile": "mean_file",
    "cropsize": "crop_size",
    "mirror": "mirror",
}

# V1 data layer types whose own *_param once carried the transformation fields.
_DATA_UPGRADE_PARAMS = {
    _V1.DATA: "data_param",
    _V1.IMAGE_DATA: "image_data_param",
    _V1.WINDOW_DATA: "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

SOLVER_TYPE_NAMES = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}


class UpgradeReport:
    """What an upgrade did: `changed` (the message differs) and `compatible`
    (False when some old field had no place in the new format and was dropped)."""

    def __init__(self):
        self.changed = False
        self.compatible = True
        self.steps = []

    def __bool__(self):
        return self.changed


# --------------------------------------------------------------------- needs

def net_needs_v0_upgrade(net_param):
    return any(layer.HasField("layer") for layer in net_param.layers)


def net_needs_v1_upgrade(net_param):
    return len(net_param.layers) > 0


def net_needs_data_upgrade(net_param):
    for layer in net_param.layers:
        param_name = _DATA_UPGRADE_PARAMS.get(layer.type)
        if param_name is None:
            continue
        params = getattr(layer, param_name)
        if any(params.HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def net_needs_input_upgrade(net_param):
    return len(net_param.input) > 0


def net_needs_batchnorm_upgrade(net_param):
    return any(layer.type == "BatchNorm" and len(layer.param) == 3
               for layer in net_param.layer)


def net_needs_upgrade(net_param):
    """True when the net uses any deprecated format (Caffe's NetNeedsUpgrade)."""
    return (net_needs_v0_upgrade(net_param) or net_needs_v1_upgrade(net_param)
            or net_needs_data_upgrade(net_param) or net_needs_input_upgrade(net_param)
            or net_needs_batchnorm_upgrade(net_param))


# ------------------------------------------------------------------- driver

def upgrade_net_param(net_param):
    """Upgrade `net_param` in place to the current format; True if anything changed."""
    return upgrade_net(net_param).changed


def upgrade_net(net_param, source="NetParameter"):
    """Upgrade in place and return an UpgradeReport; `source` names the file in logs
    and errors."""
    report = UpgradeReport()
    if len(net_param.layer) and len(net_param.layers):
        raise PrototxtError(
            f"{source}: the net mixes `layer {{ }}` (current format) and the deprecated "
            "`layers { }` entries; a net must use one format -- upgrade the old entries "
            "to `layer { type: \"...\" }`")
    if net_needs_v0_upgrade(net_param):
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V0LayerParameter: %s", source)
        upgraded = caffe_pb2.NetParameter()
        ok = _upgrade_v0_net(net_param, upgraded, source)
        net_param.CopyFrom(upgraded)
        _record(report, "V0 layers -> V1", ok)
        if ok:
            log.info("Successfully upgraded file specified using deprecated V0LayerParameter")
        else:
            log.error("Warning: had one or more problems upgrading V0NetParameter to "
                      "NetParameter (see above); continuing anyway.")
        log.warning("Note that future Caffe releases will not support V0NetParameter; "
                    "use `netdef upgrade_net_proto_text` for prototxt and `netdef "
                    "upgrade_net_proto_binary` for model weights to upgrade this and any "
                    "other net protos to the new format.")
    if net_needs_data_upgrade(net_param):
        log.info("Attempting to upgrade input file specified using deprecated "
                 "transformation parameters: %s", source)
        _upgrade_data_transformation(net_param)
        _record(report, "data transformation fields -> transform_param", True)
        log.info("Successfully upgraded file specified using deprecated data "
                 "transformation parameters.")
        log.warning("Note that future Caffe releases will only support transform_param "
                    "messages for transformation fields.")
    if net_needs_v1_upgrade(net_param):
        log.info("Attempting to upgrade input file specified using deprecated "
                 "V1LayerParameter: %s", source)
        ok = _upgrade_v1_net(net_param)
        _record(report, "V1 layers -> layer", ok)
        if ok:
            log.info("Successfully upgraded file specified using deprecated V1LayerParameter")
        else:
            log.error("Warning: had one or more problems upgrading V1LayerParameter "
                      "(see above); continuing anyway.")
    if net_needs_input_upgrade(net_param):
        log.info("Attempting to upgrade input file specified using deprecated input "
                 "fields: %s", source)
        _upgrade_net_input(net_param, source)
        _record(report, "input fields -> Input layer", True)
        log.info("Successfully upgraded file specified using deprecated input fields.")
        log.warning("Note that future Caffe releases will only support input layers and "
                    "not input fields.")
    if net_needs_batchnorm_upgrade(net_param) and _upgrade_batchnorm(net_param):
        log.info("Upgraded batch norm layers using deprecated params (lr_mult and "
                 "decay_mult of their statistics set to 0): %s", source)
        _record(report, "BatchNorm statistics ParamSpecs -> lr_mult 0", True)
    return report


def _record(report, step, ok):
    report.changed = True
    report.compatible &= ok
    report.steps.append(step)


# ------------------------------------------------------------------- V0 -> V1

def _upgrade_v0_net(v0_net, net_param, source):
    """V0 net -> V1 net (Caffe keeps only name, layers, inputs and force_backward)."""
    padded = _fold_padding_layers(v0_net, source)
    compatible = True
    net_param.Clear()
    if padded.HasField("name"):
        net_param.name = padded.name
    for index, connection in enumerate(padded.layers):
        if not connection.HasField("layer") and _has_v1_content(connection):
            raise PrototxtError(
                f"{source}: layers entry {index} ('{connection.name}') is a V1 layer inside "
                "a V0 net (`layers { layer { ... } }`); a net must use one format -- "
                "write every layer in one style")
        compatible &= _upgrade_v0_layer(connection, net_param.layers.add())
    net_param.input.extend(padded.input)
    net_param.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        net_param.force_backward = padded.force_backward
    return compatible


def _has_v1_content(connection):
    return any(field.name not in ("bottom", "top") for field, _ in connection.ListFields())


def _fold_padding_layers(net, source):
    """Drop V0 "padding" layers, giving their `pad` to the conv/pool layer they feed."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    producer = {name: -1 for name in net.input}  # blob -> index of its last writer
    for index, connection in enumerate(net.layers):
        layer = connection.layer
        if layer.type != "padding":
            out.layers.add().CopyFrom(connection)
        for j, blob in enumerate(connection.bottom):
            if blob not in producer:
                raise PrototxtError(
                    f"{source}: layer '{layer.name}' reads blob '{blob}', which neither a "
                    "net input nor an earlier layer produces")
            source_index = producer[blob]
            if source_index == -1:
                continue
            pad_layer = net.layers[source_index]
            if pad_layer.layer.type != "padding":
                continue
            if layer.type not in ("conv", "pool"):
                raise PrototxtError(
                    f"{source}: padding layer '{pad_layer.layer.name}' feeds layer "
                    f"'{layer.name}' of type '{layer.type}'; padding can only be folded "
                    "into a conv or pool layer")
            if len(connection.bottom) != 1:
                raise PrototxtError(f"{source}: conv layer '{layer.name}' fed by a padding "
                                    "layer must take a single blob as input")
            if len(pad_layer.bottom) != 1 or len(pad_layer.top) != 1:
                raise PrototxtError(f"{source}: padding layer '{pad_layer.layer.name}' must "
                                    "take one blob and produce one blob")
            target = out.layers[len(out.layers) - 1]
            target.layer.pad = pad_layer.layer.pad
            target.bottom[j] = pad_layer.bottom[0]
        for blob in connection.top:
            producer[blob] = index
    return out


def _upgrade_v0_layer(connection, v1_layer):
    """One V0 layer -> V1 layer; False if some field had no place in the new format."""
    compatible = True
    v1_layer.Clear()
    v1_layer.bottom.extend(connection.bottom)
    v1_layer.top.extend(connection.top)
    if not connection.HasField("layer"):
        return compatible
    v0 = connection.layer
    kind = v0.type
    if v0.HasField("name"):
        v1_layer.name = v0.name
    if v0.HasField("type"):
        if kind not in V0_TO_V1_TYPE:
            raise PrototxtError(
                f"layer '{v0.name}': unknown V0 layer type '{kind}' (known: "
                f"{', '.join(sorted(V0_TO_V1_TYPE))})")
        v1_layer.type = _V1.LayerType.Value(V0_TO_V1_TYPE[kind])
    for blob in v0.blobs:
        v1_layer.blobs.add().CopyFrom(blob)
    v1_layer.blobs_lr.extend(v0.blobs_lr)
    v1_layer.weight_decay.extend(v0.weight_decay)
    for field, value in v0.ListFields():
        name = field.name
        if name in _V0_TRANSFORM_FIELDS:
            setattr(v1_layer.transform_param, _V0_TRANSFORM_FIELDS[name], value)
            continue
        targets = _V0_FIELD_TARGETS.get(name)
        if targets is None:
            continue  # name/type/blobs/... handled above; new_num/new_channels unused
        target = targets.get(kind)
        if target is None:
            log.error("Unknown parameter %s for layer type %s", name, kind)
            compatible = False
            continue
        _assign_path(v1_layer, target, value, name)
    return compatible


def _assign_path(message, path, value, v0_name):
    """Set `param.field` on `message`: copy messages, append to repeated fields,
    translate enums by name."""
    parent_name, _, field_name = path.rpartition(".")
    parent = getattr(message, parent_name) if parent_name else message
    field = parent.DESCRIPTOR.fields_by_name[field_name]
    if field.message_type is not None:
        getattr(parent, field_name).CopyFrom(value)
        return
    if field.enum_type is not None:
        old_enum = caffe_pb2.V0LayerParameter.DESCRIPTOR.fields_by_name[v0_name].enum_type
        value = field.enum_type.values_by_name[old_enum.values_by_number[value].name].number
    if _is_repeated(field):
        getattr(parent, field_name).append(value)
    else:
        setattr(parent, field_name, value)


def _is_repeated(field):
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == field.LABEL_REPEATED


# ------------------------------------------------------- data transformation

def _upgrade_data_transformation(net_param):
    """Move the old transformation fields of V1 data layers into transform_param."""
    for layer in net_param.layers:
        param_name = _DATA_UPGRADE_PARAMS.get(layer.type)
        if param_name is None:
            continue
        params = getattr(layer, param_name)
        transform = layer.transform_param
        # Caffe touches both messages for every such layer, so both end up present.
        params.SetInParent()
        transform.SetInParent()
        for field in _TRANSFORM_FIELDS:
            if params.HasField(field):
                setattr(transform, field, getattr(params, field))
                params.ClearField(field)


# ------------------------------------------------------------------- V1 -> V2

def _upgrade_v1_net(net_param):
    """Every V1 `layers` entry -> a `layer` (the caller refused nets that have both)."""
    v1_layers = list(net_param.layers)
    upgraded = []
    compatible = True
    for index, v1_layer in enumerate(v1_layers):
        layer = caffe_pb2.LayerParameter()
        if not upgrade_v1_layer(v1_layer, layer):
            log.error("Upgrade of input layer %d failed.", index)
            compatible = False
        upgraded.append(layer)
    del net_param.layers[:]
    net_param.layer.extend(upgraded)
    return compatible


def upgrade_v1_layer(v1_layer, layer):
    """Fill LayerParameter `layer` from V1LayerParameter `v1_layer`; False if some
    content could not be carried over."""
    compatible = True
    layer.Clear()
    layer.bottom.extend(v1_layer.bottom)
    layer.top.extend(v1_layer.top)
    if v1_layer.HasField("name"):
        layer.name = v1_layer.name
    for rule in v1_layer.include:
        layer.include.add().CopyFrom(rule)
    for rule in v1_layer.exclude:
        layer.exclude.add().CopyFrom(rule)
    if v1_layer.HasField("type"):
        enum_name = _V1.LayerType.Name(v1_layer.type)
        layer.type = V1_TO_V2_TYPE[enum_name]
    for blob in v1_layer.blobs:
        layer.blobs.add().CopyFrom(blob)

    def spec(i):
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1_layer.param):
        spec(i).name = name
    for i, mode in enumerate(v1_layer.blob_share_mode):
        spec(i).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(
            _V1.DimCheckMode.Name(mode))
    for i, lr in enumerate(v1_layer.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1_layer.weight_decay):
        spec(i).decay_mult = decay
    layer.loss_weight.extend(v1_layer.loss_weight)

    layer_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for field, value in v1_layer.ListFields():
        if field.name.endswith("_param") and field.name in layer_fields:
            getattr(layer, field.name).CopyFrom(value)
    if v1_layer.HasField("layer"):
        log.error("Input NetParameter has V0 layer -- ignoring.")
        compatible = False
    return compatible


# ---------------------------------------------------------------- net input

def _upgrade_net_input(net_param, source):
    """`input` + `input_shape`/`input_dim` -> a first layer `Input` named "input"."""
    names = list(net_param.input)
    shapes = list(net_param.input_shape)
    dims = list(net_param.input_dim)
    if shapes or dims:
        if shapes and dims:
            log.warning("%s: both input_shape and input_dim are given; using input_shape",
                        source)
        if shapes and len(shapes) != len(names):
            raise PrototxtError(
                f"{source}: {len(names)} net input(s) {names} but {len(shapes)} input_shape "
                "entries; give one input_shape per input")
        if not shapes and len(dims) != 4 * len(names):
            raise PrototxtError(
                f"{source}: {len(names)} net input(s) {names} need {4 * len(names)} input_dim "
                f"values (4 per input: num, channels, height, width), found {len(dims)}")
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        for i, name in enumerate(names):
            layer.top.append(name)
            shape = layer.input_param.shape.add()
            if shapes:
                shape.CopyFrom(shapes[i])
            else:
                shape.dim.extend(dims[4 * i:4 * i + 4])
        existing = list(net_param.layer)
        del net_param.layer[:]
        net_param.layer.append(layer)
        net_param.layer.extend(existing)
    # An input with no shape (as old caffemodels carry) is simply dropped.
    net_param.ClearField("input")
    net_param.ClearField("input_shape")
    net_param.ClearField("input_dim")


# ---------------------------------------------------------------- BatchNorm

def _upgrade_batchnorm(net_param):
    """Pin the three statistics of old-style BatchNorm layers to lr_mult = decay_mult = 0
    (names and share modes stay, so shared statistics keep working).  True if any
    value changed."""
    changed = False
    for layer in net_param.layer:
        if layer.type != "BatchNorm" or len(layer.param) != 3:
            continue
        for spec in layer.param:
            for field in ("lr_mult", "decay_mult"):
                if not spec.HasField(field) or getattr(spec, field) != 0.0:
                    setattr(spec, field, 0.0)
                    changed = True
    return changed


# ------------------------------------------------------------------- solver

def solver_needs_upgrade(solver_param):
    """True when the solver uses the deprecated `solver_type` enum."""
    return solver_param.HasField("solver_type")


def upgrade_solver_param(solver_param, source="SolverParameter"):
    """`solver_type: NESTEROV` -> `type: "Nesterov"` (in place); True if changed."""
    if not solver_needs_upgrade(solver_param):
        return False
    if solver_param.HasField("type"):
        raise PrototxtError(
            f"{source}: failed to upgrade solver: the old solver_type field (enum) and the "
            "new type field (string) cannot both be specified; keep only "
            f"type: \"{solver_param.type}\"")
    log.info("Attempting to upgrade input file specified using deprecated "
             "'solver_type' field (enum)': %s", source)
    enum_name = caffe_pb2.SolverParameter.SolverType.Name(solver_param.solver_type)
    solver_param.type = SOLVER_TYPE_NAMES[enum_name]
    solver_param.ClearField("solver_type")
    log.info("Successfully upgraded file specified using deprecated 'solver_type' field "
             "(enum) to 'type' field (string).")
    log.warning("Note that future Caffe releases will only support 'type' field (string) "
                "for a solver's type.")
    return True
