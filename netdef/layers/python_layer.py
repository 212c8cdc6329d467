"""The Python layer: a layer written by the user in Python, as pycaffe's.

``python_param { module: "m" layer: "C" param_str: "..." }`` imports module ``m``
(from ``sys.path`` plus the current directory), finds class ``C`` and makes one
object of it.  Before ``setup`` runs the object has ``param_str``, ``phase`` and
``blobs`` (a list with pycaffe's ``add_blob(*shape)``); the Net then calls its
``setup(bottom, top)``, ``reshape(bottom, top)``, ``forward(bottom, top)`` and
``backward(top, propagate_down, bottom)`` with Blob objects.

A class that subclasses ``netdef.Layer`` (pycaffe's ``caffe.Layer``) IS the layer the
Net holds, so ``net.layers[i]`` is the user's object with all its own methods, as in
pycaffe.  It may leave ``__init__`` alone (the usual case) or define one taking the
LayerParameter.  Any other class is driven through a small wrapper instead.

Exceptions raised by the user's code come back as a LayerError naming the layer, the
module and the class, with the user's message; the error is also an instance of the
user's exception class (``except RuntimeError`` still catches it, as with pycaffe).

Importing a module runs its code, so a prototxt from an untrusted source can run
anything through a Python layer.  The library allows Python layers by default (as
pycaffe does); the command line refuses them unless the user opts in with
``--allow-python-layers`` or the environment variable NETDEF_ALLOW_PYTHON_LAYERS=1.
``allow_python_layers(flag)`` is that switch; when it is off, the module is never
imported and the layer's setup raises a LayerError that says how to opt in.
"""

import functools
import importlib
import importlib.util
import inspect
import os
import sys

import numpy as np

from ..blob import Blob
from ..errors import LayerError
from ..layer import Layer, register

ENV_VAR = "NETDEF_ALLOW_PYTHON_LAYERS"
_allowed = True


def allow_python_layers(flag: bool):
    """Allow (True) or refuse (False) Python layers in Nets built from now on."""
    global _allowed
    _allowed = bool(flag)


def python_layers_switch() -> bool:
    """The switch alone (without the environment variable), to save and restore it."""
    return _allowed


def python_layers_allowed() -> bool:
    """True when the switch is on or the environment variable opts in."""
    return _allowed or os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


class PythonLayerError(LayerError):
    """A failure in (or while loading) a user's Python layer."""


class BlobVec(list):
    """pycaffe's ``layer.blobs``: a list of Blobs with ``add_blob(*shape)``."""

    def add_blob(self, *shape):
        blob = Blob(shape, name=f"param{len(self)}")
        self.append(blob)
        return blob


def _where(layer_param):
    pp = layer_param.python_param
    return f"Python layer '{layer_param.name}' (module '{pp.module}', class '{pp.layer}')"


def _import_module(name):
    """``importlib.import_module`` with the current directory appended to sys.path.

    Layer modules written for pycaffe start with ``import caffe``: where no real Caffe is
    installed, that name is given netdef (``netdef.install_caffe_alias``) before importing.
    """
    _alias_caffe_if_absent()
    extra = [p for p in (os.getcwd(),) if p not in sys.path]
    sys.path.extend(extra)
    try:
        return importlib.import_module(name)
    finally:
        for p in extra:
            if p in sys.path:
                sys.path.remove(p)


def _alias_caffe_if_absent():
    if "caffe" in sys.modules or importlib.util.find_spec("caffe") is not None:
        return
    from ..pycaffe import install_caffe_alias
    install_caffe_alias()


def load_class(layer_param):
    """The class that ``python_param`` names, or a PythonLayerError saying why not."""
    pp = layer_param.python_param
    where = _where(layer_param)
    if not pp.module or not pp.layer:
        raise PythonLayerError(f"{where}: python_param needs both 'module' and 'layer'")
    try:
        module = _import_module(pp.module)
    except Exception as exc:
        raise PythonLayerError(f"{where}: cannot import module '{pp.module}' (searched sys.path "
                               f"and the current directory): {type(exc).__name__}: {exc}") \
            from exc
    cls = getattr(module, pp.layer, None)
    if cls is None:
        found = getattr(module, "__file__", None) or pp.module
        raise PythonLayerError(f"{where}: module '{pp.module}' ({found}) has no class "
                               f"'{pp.layer}'")
    if not inspect.isclass(cls):
        raise PythonLayerError(f"{where}: '{pp.module}.{pp.layer}' is a "
                               f"{type(cls).__name__}, not a class")
    return cls


_ERROR_CLASSES = {}


def _message_of(err):
    return getattr(err, "_message", None) or Exception.__str__(err)


def _reduce(err):
    # the combined class exists only in the process that made it: pickle as the plain error
    return PythonLayerError, (str(err),)


def _error_class(user_type):
    """A PythonLayerError that is also a ``user_type``, so that code catching the user's own
    exception (``except RuntimeError``, as with pycaffe) still catches it; plain
    PythonLayerError when the two cannot be combined (exceptions with their own C layout)."""
    if user_type not in _ERROR_CLASSES:
        try:
            _ERROR_CLASSES[user_type] = type(f"PythonLayer{user_type.__name__}",
                                             (PythonLayerError, user_type),
                                             {"__str__": _message_of, "__reduce__": _reduce,
                                              "__module__": __name__})
        except TypeError:
            _ERROR_CLASSES[user_type] = PythonLayerError
    return _ERROR_CLASSES[user_type]


def _user_error(exc, message):
    cls = _error_class(type(exc))
    try:
        err = cls.__new__(cls, message)  # __init__ skipped: user classes may need other args
        err.args = (message,)
    except Exception:
        err = PythonLayerError(message)
    err._message = message
    return err


def _guarded(method, layer_param, what):
    """``method`` with the user's exceptions turned into a PythonLayerError (that is also
    an instance of the user's exception class)."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except PythonLayerError:
            raise
        except Exception as exc:
            raise _user_error(exc, f"{_where(layer_param)}: {what} raised "
                                   f"{type(exc).__name__}: {exc}") from exc

    return call


def _call_init(init, obj, layer_param):
    """Run a user ``__init__``: with the LayerParameter as pycaffe passes it, or none."""
    try:
        inspect.signature(init).bind(obj, layer_param)
        args = (layer_param,)
    except (TypeError, ValueError):
        args = ()
    _guarded(init, layer_param, "__init__")(obj, *args)


def _prepare(obj, layer_param):
    """The attributes pycaffe gives a layer object before its setup."""
    obj.param_str = layer_param.python_param.param_str
    obj.param_str_ = obj.param_str  # the name older pycaffe used
    obj.phase = layer_param.phase
    if not isinstance(getattr(obj, "blobs", None), BlobVec):
        obj.blobs = BlobVec(getattr(obj, "blobs", None) or [])


def _resume_state(layer):
    """What a solver snapshot keeps of a user layer: the Net's generator, while ``rng``
    still holds it.  User code often puts its own generator there (``self.rng =
    np.random.RandomState(seed)``); that one is the user's and is not saved."""
    rng = getattr(layer, "rng", None)
    return {"rng": rng.bit_generator.state} if isinstance(rng, np.random.Generator) else {}


def _set_resume_state(layer, state):
    rng = getattr(layer, "rng", None)
    if "rng" in state and isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state["rng"]


def _make_user_layer(cls, layer_param, rng):
    """An object of the user's netdef.Layer subclass, ready for the Net."""
    obj = cls.__new__(cls)
    obj.param_str = layer_param.python_param.param_str
    Layer.__init__(obj, layer_param, rng=rng)
    obj.blobs = BlobVec()
    if cls.__init__ is not Layer.__init__:
        _call_init(cls.__init__, obj, layer_param)
        if rng is not None:
            obj.rng = rng  # a user __init__ calling Layer.__init__(param) made a fresh one
    _prepare(obj, layer_param)
    if getattr(cls, "type", None) is None:
        obj.type = "Python"
    for name in ("setup", "reshape", "forward", "backward"):
        setattr(obj, name, _guarded(getattr(obj, name), layer_param, f"{name}()"))
    if not hasattr(cls, "get_resume_state"):
        obj.get_resume_state = functools.partial(_resume_state, obj)
        obj.set_resume_state = functools.partial(_set_resume_state, obj)
    return obj


@register("Python")
class PythonLayer(Layer):
    """The "Python" type.  Creating it yields the user's own object when its class
    subclasses netdef.Layer; otherwise this wrapper, which drives a duck-typed object
    (or, when Python layers are not allowed, refuses in setup)."""

    def __new__(cls, layer_param, rng=None):
        if cls is PythonLayer and python_layers_allowed():
            user_cls = load_class(layer_param)
            if issubclass(user_cls, Layer) and not issubclass(user_cls, PythonLayer):
                return _make_user_layer(user_cls, layer_param, rng)
        return super().__new__(cls)

    def __init__(self, layer_param, rng=None):
        super().__init__(layer_param, rng=rng)
        self.blobs = BlobVec()
        self.user = None
        if not python_layers_allowed():
            return
        user_cls = load_class(layer_param)
        user = user_cls.__new__(user_cls)
        user.param_str = layer_param.python_param.param_str
        if user_cls.__init__ is not object.__init__:
            _call_init(user_cls.__init__, user, layer_param)
        _prepare(user, layer_param)
        user.blobs = self.blobs
        user.rng = self.rng
        self.user = user

    def __getattr__(self, name):
        # Only reached for names the wrapper lacks: the user's own methods/attributes.
        user = self.__dict__.get("user")
        if user is None:
            raise AttributeError(name)
        return getattr(user, name)

    def _call(self, name, *args):
        if self.user is None:
            raise LayerError(f"{self.describe()}: Python layers are disabled because they run "
                             "code named by the model file. Pass --allow-python-layers on the "
                             f"command line or set {ENV_VAR}=1 to allow them (the Python API "
                             "allows them unless allow_python_layers(False) was called)")
        method = getattr(self.user, name, None)
        if method is None:
            if name == "backward":
                return None
            raise PythonLayerError(f"{_where(self.layer_param)}: the class defines no "
                                   f"{name}() method")
        return _guarded(method, self.layer_param, f"{name}()")(*args)

    def setup(self, bottom, top):
        self._call("setup", bottom, top)
        if self.user is not None and self.user.blobs is not self.blobs:
            self.blobs = BlobVec(self.user.blobs)  # the user replaced the list

    def reshape(self, bottom, top):
        self._call("reshape", bottom, top)

    def forward(self, bottom, top):
        self._call("forward", bottom, top)

    def backward(self, top, propagate_down, bottom):
        self._call("backward", top, propagate_down, bottom)
