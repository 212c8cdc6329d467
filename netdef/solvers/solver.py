"""Solver: Caffe's training loop -- test, forward/backward, update, display, snapshot.

The update rules (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam) are numba kernels
over the train net's flat parameter buffers (see netdef/kernels/update.py); this module
owns the loop, learning-rate policy, testing, snapshots and restore.
"""

import math
import os
import signal
import time
from collections import deque

import numpy as np

from .. import rng as rngmod
from ..errors import NetdefError, SolverError
from ..kernels import update as kernels
from ..log import logger
from ..net import Net
from ..proto import caffe_pb2
from .lr_policy import LearningRate

TYPE_NAMES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
TWO_HISTORIES = ("AdaDelta", "Adam")

NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"


class Solver:
    """Train ``param.net`` (a SolverParameter, already upgraded) -- ``netdef.get_solver``."""

    def __init__(self, param, solver_path=None, weights=None, seed_seq=None):
        self.param = param
        self.solver_dir = os.path.dirname(os.path.abspath(solver_path)) if solver_path else None
        self.type = param.type or "SGD"
        if self.type not in TYPE_NAMES.values():
            raise SolverError(f"unknown solver type {self.type!r} (known: "
                              f"{', '.join(TYPE_NAMES.values())})")
        if param.random_seed >= 0:
            rngmod.set_random_seed(param.random_seed)
            seed_seq = np.random.SeedSequence(param.random_seed)
        self._seed_seq = seed_seq if seed_seq is not None else rngmod.next_seed_sequence()
        self.lr = LearningRate(param)
        if param.regularization_type not in ("L1", "L2"):
            raise SolverError(f"unknown regularization_type {param.regularization_type!r} "
                              "(known: L1, L2)")
        if param.iter_size < 1:
            raise SolverError(f"iter_size must be at least 1, not {param.iter_size}")
        if param.average_loss < 1:
            raise SolverError(f"average_loss must be at least 1, not {param.average_loss}")
        self.iter = 0
        self.requested_early_exit = False
        self.action_request = None  # callable returning NONE / STOP / SNAPSHOT
        self.losses = deque(maxlen=param.average_loss)
        self.smoothed_loss = 0.0
        self._check_snapshot_prefix()
        self.net = self._build_train_net()
        self.test_nets = self._build_test_nets()
        for w in list(param.weights) + list(weights or []):
            self.net.copy_from(w)
        self._init_history()
        self.callbacks = []

    # ----------------------------------------------------------------- nets
    def _resolve(self, path):
        if os.path.exists(path) or not self.solver_dir:
            return path
        alt = os.path.join(self.solver_dir, path)
        return alt if os.path.exists(alt) else path

    def _read_net(self, path):
        from ..prototxt import read_net_param

        path = self._resolve(path)
        if not os.path.exists(path):
            raise SolverError(f"net file '{path}' named in the solver does not exist")
        return read_net_param(path)

    def _build_train_net(self):
        p = self.param
        sources = [p.HasField("train_net_param"), p.HasField("train_net"),
                   p.HasField("net_param"), p.HasField("net")]
        if sum(sources) == 0:
            raise SolverError("the solver names no net: set `net`, `net_param`, `train_net` or "
                              "`train_net_param`")
        if sum(sources) > 1:
            raise SolverError("the solver names more than one train net (use exactly one of "
                              "train_net_param, train_net, net_param, net)")
        if p.HasField("train_net_param"):
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(p.train_net_param)
        elif p.HasField("train_net"):
            net_param = self._read_net(p.train_net)
        elif p.HasField("net_param"):
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(p.net_param)
        else:
            net_param = self._read_net(p.net)
        state = caffe_pb2.NetState()
        state.phase = caffe_pb2.TRAIN
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        logger.info("Creating training net")
        return Net(net_param, phase=state.phase, seed_seq=self._seed_seq.spawn(1)[0])

    def _build_test_nets(self):
        p = self.param
        has_generic = p.HasField("net_param") or p.HasField("net")
        specs = [("test_net_param", tp) for tp in p.test_net_param]
        specs += [("test_net", self._read_net(f)) for f in p.test_net]
        generic = len(p.test_iter) - len(specs)
        if generic < 0 or (generic > 0 and not has_generic):
            raise SolverError(f"test_iter is given {len(p.test_iter)} times for {len(specs)} "
                              "test nets: give one test_iter per test net")
        if p.test_state and len(p.test_state) != len(p.test_iter):
            raise SolverError("test_state must be given once per test net")
        if generic:
            base = (p.net_param if p.HasField("net_param") else self._read_net(p.net))
            specs += [("net", base)] * generic
        nets = []
        for i, (_, net_param) in enumerate(specs):
            param = caffe_pb2.NetParameter()
            param.CopyFrom(net_param)
            state = caffe_pb2.NetState()
            state.phase = caffe_pb2.TEST
            state.MergeFrom(param.state)
            if p.test_state:
                state.MergeFrom(p.test_state[i])
            param.state.CopyFrom(state)
            logger.info("Creating test net (#%d) specified by %s", i, specs[i][0])
            net = Net(param, phase=state.phase, seed_seq=self._seed_seq.spawn(1)[0])
            net.share_with(self.net)
            nets.append(net)
        return nets

    def _init_history(self):
        net = self.net
        sizes = [b.count for b in net.learnable_params]
        self.offsets = np.zeros(len(sizes) + 1, np.int64)
        self.offsets[1:] = np.cumsum(sizes)
        n_hist = 2 if self.type in TWO_HISTORIES else 1
        self.history = [np.zeros(net.flat_data.size, np.float32) for _ in range(n_hist)]
        self.lr_mults = np.asarray(net.params_lr, np.float64)
        self.decay_mults = np.asarray(net.params_weight_decay, np.float64)

    def history_blobs(self):
        """Per-parameter views of the history, in Caffe's snapshot order."""
        out = []
        for h in self.history:
            for i, blob in enumerate(self.net.learnable_params):
                a, b = self.offsets[i], self.offsets[i + 1]
                out.append(h[a:b].reshape(blob.shape))
        return out

    # ----------------------------------------------------------------- loop
    def solve(self, resume_file=None):
        logger.info("Solving %s", self.net.name)
        logger.info("Learning Rate Policy: %s", self.param.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            logger.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            logger.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_from_to()
            logger.info("Iteration %d, loss = %g", self.iter, loss)
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        logger.info("Optimization Done.")

    def step(self, iters):
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + iters
        self.losses.clear()
        self.smoothed_loss = 0.0
        batch = _batch_size(self.net)
        t_last, iter_last = time.perf_counter(), self.iter
        t_start = t_last
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if (p.test_interval and self.iter % p.test_interval == 0
                    and (self.iter > 0 or p.test_initialization)):
                self.test_all()
                if self.requested_early_exit:
                    break
            display = p.display and self.iter % p.display == 0
            self.net.debug_info = bool(display and p.debug_info)
            loss = 0.0
            for _ in range(p.iter_size):
                loss += self.net.forward_backward()
            loss /= p.iter_size
            if not (math.isfinite(loss) and kernels.all_finite(self.net.flat_diff)):
                self._stop_on_divergence(loss)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                now = time.perf_counter()
                lapse = now - t_last
                done = self.iter - iter_last
                rate = done / lapse if lapse > 0 and done else 0.0
                extra = ""
                if rate:
                    left = (p.max_iter - self.iter) / rate
                    extra = (f" ({rate:.4g} iter/s, {rate * batch * p.iter_size:.4g} images/s, "
                             f"{lapse:.3g}s/{done} iters, {_hms(left)} left)")
                logger.info("Iteration %d%s, loss = %g", self.iter, extra, self.smoothed_loss)
                t_last, iter_last = now, self.iter
                self._log_outputs(self.net, "Train")
            self.apply_update(display)
            self.iter += 1
            for cb in self.callbacks:
                cb(self)
            request = self.action_request() if self.action_request else NONE
            if (p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT:
                self.snapshot()
            if request == STOP:
                self.requested_early_exit = True
                break
        self.elapsed = time.perf_counter() - t_start

    def _stop_on_divergence(self, loss):
        """Loss or gradients went NaN/inf: keep the last good weights, say where it broke."""
        net = self.net
        culprit = None
        net.forward_from_to()
        for i, tops in enumerate(net.top_vecs):
            if any(not kernels.all_finite(t.data.ravel()) for t in tops):
                culprit = f"the output of layer '{net._layer_names[i]}' ({net.layers[i].type})"
                break
        if culprit is None:
            net.clear_param_diffs()
            net.backward_from_to()
            for i in range(len(net.layers) - 1, -1, -1):
                blobs = list(net.layers[i].blobs) + list(net.bottom_vecs[i])
                if any(not kernels.all_finite(b.diff.ravel()) for b in blobs):
                    culprit = (f"the gradient of layer '{net._layer_names[i]}' "
                               f"({net.layers[i].type})")
                    break
        where = culprit or "the loss"
        saved = ""
        if self.param.snapshot_prefix:
            model, _ = self.snapshot()
            saved = f" The last good weights were saved to {model}."
        raise SolverError(
            f"training diverged at iteration {self.iter}: loss = {loss:g}; {where} is the first "
            f"to contain NaN or inf.{saved}\nhint: lower base_lr (now {self.param.base_lr:g}), "
            "set clip_gradients, or check the input data and its scale")

    def _update_smoothed_loss(self, loss, start_iter):
        self.losses.append(loss)
        self.smoothed_loss = sum(self.losses) / len(self.losses)

    def _log_outputs(self, net, kind):
        index = 0
        for name in net.outputs:
            blob = net.blobs[name]
            w = net.blob_loss_weights.get(name, 0.0)
            for v in blob.data.ravel():
                tail = f" (* {w:g} = {w * v:g} loss)" if w else ""
                logger.info("    %s net output #%d: %s = %g%s", kind, index, name, v, tail)
                index += 1

    # ----------------------------------------------------------------- update
    def apply_update(self, display=False):
        p = self.param
        rate = self.lr.rate(self.iter)
        if display:
            logger.info("Iteration %d, lr = %g", self.iter, rate)
        self.clip_gradients()
        net = self.net
        rates = np.float32(rate) * self.lr_mults.astype(np.float32)
        decays = np.float32(p.weight_decay) * self.decay_mults.astype(np.float32)
        norm = 1.0 / p.iter_size
        l1 = p.regularization_type == "L1"
        args = (net.flat_data, net.flat_diff)
        tail = (self.offsets, rates, decays, norm, l1)
        if self.type == "SGD":
            kernels.sgd_update(*args, self.history[0], *tail, p.momentum)
        elif self.type == "Nesterov":
            kernels.nesterov_update(*args, self.history[0], *tail, p.momentum)
        elif self.type == "AdaGrad":
            kernels.adagrad_update(*args, self.history[0], *tail, p.delta)
        elif self.type == "RMSProp":
            kernels.rmsprop_update(*args, self.history[0], *tail, p.rms_decay, p.delta)
        elif self.type == "AdaDelta":
            kernels.adadelta_update(*args, self.history[0], self.history[1], *tail,
                                    p.momentum, p.delta)
        else:
            t = self.iter + 1
            b1, b2 = float(np.float32(p.momentum)), float(np.float32(p.momentum2))
            correction = math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
            kernels.adam_update(*args, self.history[0], self.history[1], *tail, p.momentum,
                                p.momentum2, p.delta, correction)

    def clip_gradients(self):
        clip = self.param.clip_gradients
        if clip < 0:
            return
        diff = self.net.flat_diff
        norm = math.sqrt(float(np.dot(diff, diff)))
        if norm > clip:
            scale = clip / norm
            logger.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale "
                        "factor %g", norm, clip, scale)
            diff *= np.float32(scale)

    # ----------------------------------------------------------------- test
    def test_all(self):
        for i in range(len(self.test_nets)):
            self.test(i)

    def test(self, net_id):
        logger.info("Iteration %d, Testing net (#%d)", self.iter, net_id)
        net = self.test_nets[net_id]
        iters = self.param.test_iter[net_id]
        scores = None
        loss = 0.0
        for _ in range(iters):
            iter_loss = net.forward_from_to()
            if self.param.test_compute_loss:
                loss += iter_loss
            values = [net.blobs[n].data.ravel().astype(np.float64) for n in net.outputs]
            if scores is None:
                scores = [v.copy() for v in values]
            else:
                for s, v in zip(scores, values):
                    s += v
        if self.param.test_compute_loss:
            logger.info("Test loss: %g", loss / max(iters, 1))
        self.last_test_scores = {}
        index = 0
        for name, s in zip(net.outputs, scores or []):
            w = net.blob_loss_weights.get(name, 0.0)
            for v in s:
                mean = v / iters
                tail = f" (* {w:g} = {w * mean:g} loss)" if w else ""
                logger.info("    Test net output #%d: %s = %g%s", index, name, mean, tail)
                self.last_test_scores.setdefault(name, []).append(mean)
                index += 1
        return self.last_test_scores

    # ----------------------------------------------------------------- snapshots
    def _check_snapshot_prefix(self):
        p = self.param
        if not (p.snapshot or p.snapshot_after_train):
            return
        prefix = p.snapshot_prefix or ""
        if not prefix:
            if p.snapshot:
                raise SolverError("snapshot is set but snapshot_prefix is empty: set "
                                  "snapshot_prefix in the solver")
            return
        folder = os.path.dirname(os.path.abspath(prefix))
        if not os.path.isdir(folder):
            raise SolverError(f"snapshot_prefix '{prefix}': folder '{folder}' does not exist")
        if not os.access(folder, os.W_OK):
            raise SolverError(f"snapshot_prefix '{prefix}': folder '{folder}' is not writable")

    def snapshot_filename(self, extension):
        prefix = self.param.snapshot_prefix
        if not prefix:
            prefix = os.path.splitext(os.path.basename(self.param.net or "netdef"))[0]
        return f"{prefix}_iter_{self.iter}{extension}"

    def snapshot(self):
        from ..weights import save_caffemodel

        p = self.param
        hdf5 = p.snapshot_format == caffe_pb2.SolverParameter.HDF5
        if hdf5:
            model = self.snapshot_filename(".caffemodel.h5")
            logger.info("Snapshotting to HDF5 file %s", model)
            self.net.save_hdf5(model, write_diff=p.snapshot_diff)
            state = self.snapshot_filename(".solverstate.h5")
            logger.info("Snapshotting solver state to HDF5 file %s", state)
            self._save_state_hdf5(state, model)
        else:
            model = self.snapshot_filename(".caffemodel")
            logger.info("Snapshotting to binary proto file %s", model)
            save_caffemodel(model, self.net.to_proto(write_diff=p.snapshot_diff))
            state = self.snapshot_filename(".solverstate")
            logger.info("Snapshotting solver state to binary proto file %s", state)
            self._save_state_proto(state, model)
        return model, state

    def _save_state_proto(self, path, model):
        from ..atomic import atomic_write
        from ..weights import array_to_blob

        st = caffe_pb2.SolverState()
        st.iter = self.iter
        st.learned_net = model
        st.current_step = self.lr.current_step
        for h in self.history_blobs():
            array_to_blob(h, st.history.add())
        with atomic_write(path) as f:
            f.write(st.SerializeToString())

    def _save_state_hdf5(self, path, model):
        import h5py

        from ..atomic import atomic_write

        with atomic_write(path) as f, h5py.File(f, "w") as h:
            h.create_dataset("iter", data=np.array([self.iter], np.int32))
            h.create_dataset("learned_net", data=np.bytes_(model))
            h.create_dataset("current_step", data=np.array([self.lr.current_step], np.int32))
            g = h.create_group("history")
            for i, arr in enumerate(self.history_blobs()):
                g.create_dataset(str(i), data=arr)

    def restore(self, path):
        """Resume from a ``.solverstate`` (binary) or ``.solverstate.h5``."""
        if not os.path.exists(path):
            raise SolverError(f"solver state '{path}' does not exist")
        if path.endswith(".h5"):
            it, learned, step, hist = _read_state_hdf5(path)
        else:
            it, learned, step, hist = _read_state_proto(path)
        self.iter = it
        self.lr.current_step = step
        if learned:
            if not os.path.exists(learned) and os.path.exists(
                    os.path.join(os.path.dirname(path), os.path.basename(learned))):
                learned = os.path.join(os.path.dirname(path), os.path.basename(learned))
            self.net.copy_from(learned)
        mine = self.history_blobs()
        if len(hist) != len(mine):
            raise SolverError(f"solver state '{path}' holds {len(hist)} history blobs; this "
                              f"{self.type} solver needs {len(mine)}")
        for k, (src, dst) in enumerate(zip(hist, mine)):
            if src.size != dst.size:
                raise SolverError(f"solver state '{path}': history blob {k} has {src.size} "
                                  f"values, the net's parameter has {dst.size}")
            dst[...] = src.reshape(dst.shape)


def _read_state_proto(path):
    from ..weights import blob_to_array

    st = caffe_pb2.SolverState()
    try:
        with open(path, "rb") as f:
            st.ParseFromString(f.read())
    except Exception as exc:  # protobuf raises its own DecodeError
        raise SolverError(f"'{path}' is not a Caffe solver state: {exc}") from exc
    return st.iter, st.learned_net, st.current_step, [blob_to_array(b) for b in st.history]


def _read_state_hdf5(path):
    import h5py

    try:
        with h5py.File(path, "r") as h:
            it = int(np.asarray(h["iter"]).ravel()[0])
            learned = h["learned_net"][()] if "learned_net" in h else b""
            step = int(np.asarray(h["current_step"]).ravel()[0]) if "current_step" in h else 0
            g = h["history"]
            hist = [np.asarray(g[str(i)], np.float32) for i in range(len(g))]
    except (OSError, KeyError) as exc:
        raise SolverError(f"'{path}' is not a Caffe HDF5 solver state: {exc}") from exc
    if isinstance(learned, bytes):
        learned = learned.decode()
    return it, learned, step, hist


def _batch_size(net):
    for name in net.inputs or list(net.blobs)[:1]:
        shape = net.blobs[name].shape
        if shape:
            return shape[0]
    return 1


def _hms(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class SignalHandler:
    """Caffe's --sigint_effect / --sighup_effect: turn signals into solver actions."""

    def __init__(self, sigint_effect=STOP, sighup_effect=SNAPSHOT):
        self.effects = {signal.SIGINT: sigint_effect, signal.SIGHUP: sighup_effect,
                        signal.SIGTERM: sigint_effect}
        self.pending = []
        self._old = {}

    def __enter__(self):
        for sig in self.effects:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame):
        self.pending.append(signum)

    def __call__(self):
        if not self.pending:
            return NONE
        signum = self.pending.pop(0)
        effect = self.effects.get(signum, NONE)
        logger.info("Signal %d received: %s", signum, effect)
        return effect


def get_solver(solver_file_or_param, weights=None):
    """Build the Solver a solver prototxt (path or SolverParameter) describes."""
    from ..prototxt import read_solver_param

    if isinstance(solver_file_or_param, caffe_pb2.SolverParameter):
        return Solver(solver_file_or_param, weights=weights)
    path = str(solver_file_or_param)
    try:
        param = read_solver_param(path)
    except NetdefError:
        raise
    return Solver(param, solver_path=path, weights=weights)
