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
