"""NetSpec: nets written in Python, as pycaffe's ``NetSpec``, ``caffe.layers``, ``caffe.params``.

::

    from netdef import layers as L, params as P
    n = netdef.NetSpec()
    n.data, n.label = L.Data(source="train_lmdb", backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.conv1, n.label)
    text = str(n.to_proto())

A layer call records its type, its bottoms (other tops) and keyword parameters; nothing
is built until ``to_proto``.  Keywords go to the layer's own ``<type>_param`` message when
that message has the field, else to the LayerParameter itself (``name``, ``include``,
``param``, ``loss_weight``, ``transform_param``...).  Special keywords: ``ntop`` (number
of tops, 0 returns the layer itself), ``in_place`` (tops are the bottoms).  Dicts fill
sub-messages, lists of dicts add repeated messages, a scalar given to a repeated field
becomes a one-element list, and a string given to an enum field is its value's name.

Names: a top takes the NetSpec attribute it is assigned to; a layer takes its first top's
name unless ``name=`` is given; anything unnamed is called ``<Type><k>``.  One difference
from pycaffe, for train/test nets in one file: a NetSpec keeps every top ever assigned, so
assigning the TEST data layer's tops to ``n.data, n.label`` after the TRAIN one's keeps
both layers (in the order they were assigned) instead of silently dropping the first.
"""

from collections import Counter, OrderedDict

from google.protobuf.descriptor import FieldDescriptor

from .proto import caffe_pb2

# Layer types whose parameters live in a message not named after the type.
_PARAM_ALIASES = {"Deconvolution": "convolution", "Im2col": "convolution",
                  "SoftmaxWithLoss": "softmax", "RNN": "recurrent", "LSTM": "recurrent"}
_SPECIAL = ("ntop", "in_place")


def param_name_dict():
    """{layer type: its ``<prefix>_param`` field's prefix}: 'InnerProduct' -> 'inner_product'."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                names[type_name[:-len("Parameter")]] = field.name[:-len("_param")]
    for type_name, prefix in _PARAM_ALIASES.items():
        names.setdefault(type_name, prefix)
    return names


_PARAM_NAMES = param_name_dict()


def assign_proto(proto, name, value):
    """Set field ``name`` of message ``proto`` from a Python value (see the module doc)."""
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise AttributeError(f"{proto.DESCRIPTOR.name} has no field {name!r}")
    repeated = _is_repeated(field)
    if repeated and not isinstance(value, (list, tuple)):
        value = [value]
    if repeated:
        container = getattr(proto, name)
        for item in value:
            if field.message_type is not None:
                _fill_message(container.add(), item)
            else:
                container.append(_scalar(field, item))
    elif field.message_type is not None:
        _fill_message(getattr(proto, name), value)
    else:
        setattr(proto, name, _scalar(field, value))


def _is_repeated(field):
    label = getattr(field, "label", None)
    if label is not None:
        return label == FieldDescriptor.LABEL_REPEATED
    return field.is_repeated


def _fill_message(message, value):
    if isinstance(value, dict):
        for k, v in value.items():
            assign_proto(message, k, v)
    elif hasattr(value, "DESCRIPTOR"):
        message.CopyFrom(value)
    else:
        raise TypeError(f"{message.DESCRIPTOR.name} needs a dict or a message, not "
                        f"{type(value).__name__}")


def _scalar(field, value):
    if field.enum_type is not None and isinstance(value, str):
        try:
            return field.enum_type.values_by_name[value].number
        except KeyError:
            known = ", ".join(field.enum_type.values_by_name)
            raise ValueError(f"{value!r} is not a value of {field.enum_type.name} "
                             f"(known: {known})") from None
    return value


class Top:
    """One output of a layer call: what NetSpec attributes hold and layers take as bottoms."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter of every layer this top depends on."""
        return to_proto(self)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)

    def __repr__(self):
        return f"Top({self.fn.type_name}, {self.n})"


class Function:
    """One layer call: type, bottoms and parameters, turned into a LayerParameter later."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for i, bottom in enumerate(inputs):
            if not isinstance(bottom, Top):
                # pycaffe's wording (scripts match it); tops are other layers' outputs
                raise TypeError(f"{type_name} input {i} is not a Top (type is {type(bottom)})")
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        if self.in_place and self.ntop != len(inputs):
            raise ValueError(f"{type_name}: in_place needs as many tops as bottoms "
                             f"({self.ntop} tops, {len(inputs)} bottoms)")
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _name(self, names, autonames):
        if self not in names:
            if self.ntop > 0:
                names[self] = self._top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for top in self.inputs:
            top._to_proto(layers, names, autonames)
            bottoms.append(layers[top.fn].top[top.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._top_name(t, names, autonames) for t in self.tops)
        layer.name = self._name(names, autonames)
        prefix = _PARAM_NAMES.get(self.type_name)
        for key, value in self.params.items():
            if key.endswith("_param") or prefix is None or \
                    key not in getattr(layer, prefix + "_param").DESCRIPTOR.fields_by_name:
                target = layer
            else:
                target = getattr(layer, prefix + "_param")
            try:
                assign_proto(target, key, value)
            except AttributeError:
                where = f"{prefix}_param nor " if prefix else ""
                raise AttributeError(f"{self.type_name} layer '{layer.name}': {key!r} is a field "
                                     f"of neither {where}LayerParameter") from None
        layers[self] = layer

    def to_proto(self):
        return to_proto(self)


def to_proto(*tops):
    """A NetParameter holding every layer the given tops (or layers) need, in order."""
    layers = OrderedDict()
    autonames = Counter()
    names = {}
    for top in tops:
        top._to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """Named tops; ``to_proto()`` writes the net they make (see the module doc)."""

    def __init__(self, name=None):
        super().__setattr__("tops", OrderedDict())
        super().__setattr__("_assigned", [])  # every (name, top) ever assigned, in order
        super().__setattr__("_name", name)

    def __setattr__(self, name, value):
        if not isinstance(value, (Top, Function)):
            raise TypeError(f"NetSpec.{name}: assign a layer's output, not a "
                            f"{type(value).__name__}")
        self.tops[name] = value
        self._assigned.append((name, value))

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top {name!r}") from None

    def __delattr__(self, name):
        top = self.tops.pop(name)
        self._assigned[:] = [(n, t) for n, t in self._assigned if t is not top]

    __setitem__ = __setattr__
    __delitem__ = __delattr__

    def __getitem__(self, name):
        return self.tops[name]

    def keys(self):
        return list(self.tops)

    def to_proto(self):
        names = {value: name for name, value in self._assigned}
        autonames = Counter()
        layers = OrderedDict()
        for _, value in self._assigned:
            value._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        if self._name:
            net.name = self._name
        net.layer.extend(layers.values())
        return net


class Layers:
    """``layers.Convolution(bottom, ..., num_output=20)`` records one layer call."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer_fn(*bottoms, **params):
            fn = Function(type_name, bottoms, params)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        layer_fn.__name__ = type_name
        return layer_fn


class _ParamEnums:
    def __init__(self, type_name):
        self.type_name = type_name

    def __getattr__(self, value_name):
        message = getattr(caffe_pb2, self.type_name + "Parameter", None)
        if message is None:
            raise AttributeError(f"no {self.type_name}Parameter in the schema")
        try:
            return getattr(message, value_name)
        except AttributeError:
            raise AttributeError(f"{self.type_name}Parameter has no {value_name!r}") from None


class Parameters:
    """``params.Pooling.MAX`` is ``caffe_pb2.PoolingParameter.MAX`` (pycaffe's ``caffe.params``)."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        return _ParamEnums(type_name)


layers = Layers()
params = Parameters()
