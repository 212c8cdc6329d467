"""The layer catalogue: importing this package registers every layer type."""
from . import shape, reduce, embed  # noqa: F401
