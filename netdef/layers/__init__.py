"""The layer catalogue: importing this package registers every layer type."""
from . import shape, reduce, embed  # noqa: F401
from . import softmax, loss, accuracy, norm  # noqa: F401
from . import neuron, eltwise  # noqa: F401
from . import conv, pooling, inner_product  # noqa: F401
from . import data  # noqa: F401
from . import recurrent, python_layer  # noqa: F401
