"""The layer catalogue: importing this package registers every layer type."""

from . import (  # noqa: F401  (importing registers the layers)
    accuracy,
    conv,
    data,
    eltwise,
    embed,
    inner_product,
    loss,
    neuron,
    norm,
    pooling,
    python_layer,
    recurrent,
    reduce,
    shape,
    softmax,
)


def __getattr__(name):
    """pycaffe's ``caffe.layers.Convolution(...)``: capitalised names make NetSpec layers.

    ``netdef.layers`` is the layer catalogue (its submodules are lower-case); a layer type
    asked of it (``netdef.layers.InnerProduct``) is the NetSpec layer factory instead.
    """
    if name[:1].isupper():
        from ..net_spec import layers as spec_layers

        return getattr(spec_layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
