"""Solver: Caffe's training loop -- test, forward/backward, update, display, snapshot.

The update rules (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam) are numba kernels
over the train net's flat parameter buffers (see netdef/kernels/update.py); this module
owns the loop, learning-rate policy, testing, snapshots and restore.  Snapshots are
Caffe's files (readable by Caffe) plus a resume sidecar (see ``resume``) holding the data
cursors and random streams, so a resumed run continues exactly where the first stopped.
"""

import math
import os
import time

import numpy as np

from .. import parallel
from .. import rng as rngmod
from ..errors import NetdefError, SolverError
from ..kernels import update as kernels
from ..log import logger
from ..net import Net
from ..proto import caffe_pb2
from . import resume, state_io
from .lr_policy import LearningRate
from .signals import NONE, SNAPSHOT, STOP, SignalHandler

TYPE_NAMES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
TWO_HISTORIES = ("AdaDelta", "Adam")

__all__ = ["Solver", "SignalHandler", "get_solver", "NONE", "STOP", "SNAPSHOT"]


class Solver:
    """Train ``param.net`` -- ``netdef.get_solver`` builds one from a solver prototxt.

    ``param`` is a SolverParameter (copied; a legacy ``solver_type`` enum is upgraded);
    ``solver_path`` the file it came from (nets and weights named in it are also looked
    up beside it, and an unset ``snapshot_prefix`` becomes the file's path without its
    extension, as in Caffe); ``weights`` more caffemodels to start from (after
    ``param.weights``; each entry may list several, comma-separated).
    """

    def __init__(self, param, solver_path=None, weights=None, seed_seq=None):
        self.param = _checked_copy(param, solver_path)
        p = self.param
        self.solver_dir = os.path.dirname(os.path.abspath(solver_path)) if solver_path else None
        self.type = p.type or "SGD"
        # Data-parallel run (netdef.parallel): shard the data, seed rank r with seed + r.
        self.world = parallel.current()
        seed = p.random_seed if p.random_seed >= 0 else None
        if self.world is not None:
            seed = parallel.prepare_solver(self.world, p)
        if seed is not None:
            rngmod.set_random_seed(seed)
            seed_seq = np.random.SeedSequence(seed)
        self._seed_seq = seed_seq if seed_seq is not None else rngmod.next_seed_sequence()
        self.lr = LearningRate(p)
        self.iter = 0
        self.requested_early_exit = False
        self.action_request = None  # callable returning NONE / STOP / SNAPSHOT
        self.losses = []
        self.smoothed_loss = 0.0
        self.callbacks = []  # (on_start, on_gradients_ready) pairs, as pycaffe's add_callback
        self.last_test_scores = {}
        self._check_snapshot_prefix()
        self.net = self._build_train_net()
        root = self.world is None or self.world.is_root
        self.test_nets = self._build_test_nets() if root else []  # rank 0 alone tests
        for entry in list(p.weights) + list(weights or []) if root else []:
            for path in str(entry).split(","):
                if path:
                    self._load_weights(path)
        self._init_history()
        if self.world is not None:
            self.world.start(self, _batch_size(self.net))

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
            net_param, source = _copy(p.train_net_param), "train_net_param"
        elif p.HasField("train_net"):
            net_param, source = self._read_net(p.train_net), f"train_net file {p.train_net}"
        elif p.HasField("net_param"):
            net_param, source = _copy(p.net_param), "net_param"
        else:
            net_param, source = self._read_net(p.net), f"net file {p.net}"
        # Precedence (Caffe's): TRAIN, then the net's own state, then train_state.
        state = caffe_pb2.NetState()
        state.phase = caffe_pb2.TRAIN
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        logger.info("Creating training net specified in %s", source)
        return Net(net_param, phase=state.phase, seed_seq=self._seed_seq.spawn(1)[0])

    def _build_test_nets(self):
        p = self.param
        has_generic = p.HasField("net_param") or p.HasField("net")
        specs = [("test_net_param", tp) for tp in p.test_net_param]
        specs += [(f"test_net file {f}", self._read_net(f)) for f in p.test_net]
        generic = len(p.test_iter) - len(specs)
        if generic < 0 or (generic > 0 and not has_generic):
            raise SolverError(f"test_iter is given {len(p.test_iter)} times for {len(specs)} "
                              "test nets: give one test_iter per test net")
        if generic:
            base = p.net_param if p.HasField("net_param") else self._read_net(p.net)
            specs += [("net_param" if p.HasField("net_param") else f"net file {p.net}", base)
                      ] * generic
        if p.test_state and len(p.test_state) != len(specs):
            raise SolverError(f"test_state must be unspecified or given once per test net "
                              f"({len(p.test_state)} given for {len(specs)} test nets)")
        if specs and p.test_interval <= 0:
            raise SolverError(f"the solver defines {len(specs)} test net(s) but test_interval "
                              "is not set: give test_interval > 0 (or remove the test_iter "
                              "lines)")
        nets = []
        for i, (source, net_param) in enumerate(specs):
            param = _copy(net_param)
            state = caffe_pb2.NetState()
            state.phase = caffe_pb2.TEST
            state.MergeFrom(param.state)
            if p.test_state:
                state.MergeFrom(p.test_state[i])
            param.state.CopyFrom(state)
            logger.info("Creating test net (#%d) specified by %s", i, source)
            net = Net(param, phase=state.phase, seed_seq=self._seed_seq.spawn(1)[0])
            net.debug_info = p.debug_info
            net.share_with(self.net)
            nets.append(net)
        return nets

    def _load_weights(self, path):
        """Copy a caffemodel into the train net, and into test-only layers of test nets."""
        from ..weights import load_weights

        path = self._resolve(path)
        logger.info("Copying weights from %s", path)
        layers = load_weights(path)
        test_only = {name for net in self.test_nets for name in net.layer_dict
                     if name not in self.net.layer_dict}
        if any(arrays and name in self.net.layer_dict for name, arrays in layers) or not any(
                arrays and name in test_only for name, arrays in layers):
            self.net.copy_trained_layers(layers, source=path)  # (errors when nothing fits)
        for net in self.test_nets:
            extra = [(name, arrays) for name, arrays in layers
                     if name in net.layer_dict and name not in self.net.layer_dict]
            if extra:
                net.copy_trained_layers(extra, source=path)

    def share_weights(self, net):
        """pycaffe's ``solver.share_weights(net)``: ``net`` uses the trained parameters."""
        net.share_with(self.net)

    def _init_history(self):
        net = self.net
        sizes = [b.count for b in net.learnable_params]
        self.offsets = np.zeros(len(sizes) + 1, np.int64)
        self.offsets[1:] = np.cumsum(sizes)
        n_hist = 2 if self.type in TWO_HISTORIES else 1
        self.history = [np.zeros(net.flat_data.size, np.float32) for _ in range(n_hist)]
        self.lr_mults = np.asarray(net.params_lr, np.float64)
        self.decay_mults = np.asarray(net.params_weight_decay, np.float64)
        # (layer name, param index) owning each learnable parameter, for messages.
        self.param_names = [None] * len(net.learnable_params)
        for li, owned in enumerate(net.param_owner_of):
            for pi, oi in enumerate(owned):
                if self.param_names[oi] is None:
                    self.param_names[oi] = (net._layer_names[li], pi)

    def history_blobs(self):
        """Per-parameter views of the history, in Caffe's snapshot order."""
        out = []
        for h in self.history:
            for i, blob in enumerate(self.net.learnable_params):
                a, b = self.offsets[i], self.offsets[i + 1]
                out.append(h[a:b].reshape(blob.shape))
        return out

    def add_callback(self, on_start, on_gradients_ready):
        """pycaffe's: call ``on_start()`` before each iteration's forward passes and
        ``on_gradients_ready()`` before its update."""
        self.callbacks.append((on_start, on_gradients_ready))

    # ----------------------------------------------------------------- loop
    def solve(self, resume_file=None):
        p = self.param
        logger.info("Solving %s", self.net.name)
        logger.info("Learning Rate Policy: %s", p.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            logger.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if self.world is not None:
            self._check_ranks_agree()
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            logger.info("Optimization stopped early.")
            return
        # As Caffe: one more forward to show the final loss, and a final test.
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_from_to()
            self._update_smoothed_loss(loss, start_iter)
            logger.info("Iteration %d, loss = %g", self.iter, self.smoothed_loss)
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        logger.info("Optimization Done.")

    def step(self, iters):
        """Run ``iters`` iterations (fewer if a stop is requested)."""
        p = self.param
        net = self.net
        start_iter = self.iter
        stop_iter = self.iter + iters
        self.losses = []
        self.smoothed_loss = 0.0
        world = self.world
        batch = _batch_size(net) * (world.size if world is not None else 1)
        t_start = t_last = time.perf_counter()
        iter_last = self.iter
        snapshotted = False
        while self.iter < stop_iter:
            net.clear_param_diffs()
            tested = (p.test_interval and self.iter % p.test_interval == 0
                      and (self.iter > 0 or p.test_initialization))
            if tested:
                self.test_all()
                if self.requested_early_exit:
                    break
            if world is not None:
                world.iteration = self.iter
            for on_start, _ in self.callbacks:
                on_start()
            display = bool(p.display) and self.iter % p.display == 0
            net.debug_info = display and p.debug_info
            start_states = resume.collect_net(net)  # for a snapshot if this step diverges
            loss = 0.0
            for _ in range(p.iter_size):
                loss += net.forward_backward()
            loss /= p.iter_size
            request = None
            if world is not None:  # average the gradients over the ranks; agree on signals
                request = self.action_request() if self.action_request else NONE
                try:
                    # (no time limit on waiting while rank 0 tests or snapshots)
                    loss, request = world.sync(self, loss, request,
                                               patient=bool(tested) or snapshotted)
                except SolverError as exc:
                    self._stop_collectively(exc, start_states)
            if not (math.isfinite(loss) and kernels.all_finite(net.flat_diff)):
                self._stop_on_divergence(loss, start_states)
            if net.debug_info:
                self._log_param_norms()
            self._update_smoothed_loss(loss, start_iter)
            if display:
                now = time.perf_counter()
                self._log_progress(now - t_last, self.iter - iter_last, batch)
                t_last, iter_last = now, self.iter
                self._log_outputs(net, "Train")
            for _, on_gradients_ready in self.callbacks:
                on_gradients_ready()
            self.apply_update(display)
            if not kernels.all_finite(net.flat_data):
                self._stop_on_bad_update()
            # iter counts the updates applied so far.
            self.iter += 1
            if request is None:
                request = self.action_request() if self.action_request else NONE
            snapshotted = (p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT
            if snapshotted:
                self.snapshot()
            if request == STOP:
                self.requested_early_exit = True
                break
        self.elapsed = time.perf_counter() - t_start

    def _stop_collectively(self, exc, start_states):
        """Every rank stops at this iteration: a rank's batch went NaN/inf.  Rank 0 saves
        the state of the start of the iteration, as for a divergence in one process."""
        if self.param.snapshot_prefix and self.world.is_root:
            model, state = self.snapshot(train_states=start_states)
            exc.args = (f"{exc}\nThe last good state (iteration {self.iter}) was saved to "
                        f"{model} and {state}.",)
        raise exc

    def _collective(self, exc):
        """Mark an error every rank of a data-parallel run raises at the same point."""
        if self.world is not None:
            exc.collective = True
        return exc

    def _check_ranks_agree(self):
        world = self.world
        if not world.weights_agree(self.net.flat_data):
            logger.warning("Data-parallel ranks hold different weights after iteration %d "
                           "(their MPI library gave them different all-reduce results)",
                           self.iter)
        world.report()

    def _log_progress(self, lapse, done, batch):
        """Caffe's display line, with the image rate and the time left added."""
        p = self.param
        per_s = done / lapse if lapse > 0 else 0.0
        extra = ""
        if per_s > 0:
            left = (p.max_iter - self.iter) / per_s
            extra = (f", {per_s * batch * p.iter_size:.1f} images/s, "
                     f"{_hms(left)} left")
        logger.info("Iteration %d (%.4g iter/s, %.4gs/%d iters%s), loss = %g", self.iter,
                    per_s, lapse, done, extra, self.smoothed_loss)

    def _update_smoothed_loss(self, loss, start_iter):
        """Caffe's running mean over the last ``average_loss`` losses (in float32)."""
        n = self.param.average_loss
        loss = np.float32(loss)
        smoothed = np.float32(self.smoothed_loss)
        if len(self.losses) < n:
            self.losses.append(loss)
            size = len(self.losses)
            smoothed = (smoothed * np.float32(size - 1) + loss) / np.float32(size)
        else:
            idx = (self.iter - start_iter) % n
            smoothed = smoothed + (loss - self.losses[idx]) / np.float32(n)
            self.losses[idx] = loss
        self.smoothed_loss = float(smoothed)

    def _log_outputs(self, net, kind):
        index = 0
        for name in net.outputs:
            blob = net.blobs[name]
            w = net.blob_loss_weights.get(name, 0.0)
            for v in blob.data.ravel():
                tail = f" (* {w:g} = {w * v:g} loss)" if w else ""
                logger.info("    %s net output #%d: %s = %g%s", kind, index, name, v, tail)
                index += 1

    def _log_param_norms(self):
        data, diff = self.net.flat_data, self.net.flat_diff
        logger.info("    [Backward] All net params (data, diff): L1 norm = (%g, %g); L2 norm "
                    "= (%g, %g)", float(np.abs(data).sum(dtype=np.float64)),
                    float(np.abs(diff).sum(dtype=np.float64)),
                    math.sqrt(float(np.dot(data, data))), math.sqrt(float(np.dot(diff, diff))))

    # ----------------------------------------------------------------- divergence
    def _stop_on_divergence(self, loss, start_states):
        """Loss or gradients went NaN/inf: keep the last good weights, say where it broke.

        The weights are still those of the start of this iteration (finite), and so is
        the data state recorded then: the snapshot resumes by replaying this iteration.
        """
        where = self._first_non_finite() or "the loss"
        saved = ""
        if self.param.snapshot_prefix and (self.world is None or self.world.is_root):
            model, state = self.snapshot(train_states=start_states)
            saved = (f" The last good state (iteration {self.iter}) was saved to {model} and "
                     f"{state}.")
        raise self._collective(SolverError(
            f"training diverged at iteration {self.iter}: loss = {loss:g}; {where} is the first "
            f"to contain NaN or inf.{saved}\nhint: lower base_lr (now {self.param.base_lr:g}), "
            "set clip_gradients, or check the input data and its scale"))

    def _first_non_finite(self):
        """The first layer whose output (forward order) or gradient (backward order) of
        the last pass is not finite."""
        net = self.net
        for i, tops in enumerate(net.top_vecs):
            if any(not kernels.all_finite(t.data.ravel()) for t in tops):
                return f"the output of layer '{net._layer_names[i]}' ({net.layers[i].type})"
        for i in range(len(net.layers) - 1, -1, -1):
            blobs = list(net.layers[i].blobs)
            blobs += [b for j, b in enumerate(net.bottom_vecs[i])
                      if net.bottom_need_backward[i][j]]
            if any(not kernels.all_finite(b.diff.ravel()) for b in blobs):
                return f"the gradient of layer '{net._layer_names[i]}' ({net.layers[i].type})"
        return None

    def _stop_on_bad_update(self):
        bad = ""
        for i, blob in enumerate(self.net.learnable_params):
            if not kernels.all_finite(blob.data.ravel()):
                layer, k = self.param_names[i]
                bad = f" (first: param {k} of layer '{layer}')"
                break
        raise self._collective(SolverError(
            f"training diverged at iteration {self.iter}: the update made parameters NaN or "
            f"inf{bad}; the loss and gradients were still finite, so the learning rate "
            f"(now {self.lr.rate(self.iter):g}) is far too large.\nhint: lower base_lr or set "
            "clip_gradients; resume from the last snapshot"))

    # ----------------------------------------------------------------- update
    def apply_update(self, display=False):
        """Clip, normalise by iter_size, regularise, apply the rule (Caffe's order)."""
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
        if net.debug_info:
            self._log_update()

    def _log_update(self):
        for i, blob in enumerate(self.net.learnable_params):
            layer, k = self.param_names[i]
            n = max(blob.count, 1)
            logger.info("    [Update] Layer %s, param %d data: %g; diff: %g", layer, k,
                        blob.asum_data() / n, blob.asum_diff() / n)

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
            if self.requested_early_exit:
                break
            self.test(i)
        return self.last_test_scores

    def _handle_requests(self):
        """Act on every pending request (Caffe does this between test iterations)."""
        while self.action_request is not None:
            request = self.action_request()
            if request == SNAPSHOT:
                self.snapshot()
            elif request == STOP:
                self.requested_early_exit = True
            else:
                break

    def test(self, net_id=0):
        logger.info("Iteration %d, Testing net (#%d)", self.iter, net_id)
        net = self.test_nets[net_id]
        iters = self.param.test_iter[net_id]
        scores = None
        loss = 0.0
        for _ in range(iters):
            if self.world is None:  # (in a data-parallel run all ranks act on requests
                self._handle_requests()  # together, at the next gradient sync)
            if self.requested_early_exit:
                logger.info("Test interrupted.")
                return {}
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

    def snapshot(self, train_states=None):
        """Write the weights, the resume sidecar and the solver state; return the paths of
        the weights and the state.  ``train_states`` replaces the train net's layer states
        (the divergence guard saves those of the start of the failed iteration)."""
        from ..weights import save_caffemodel

        if self.world is not None and not self.world.is_root:
            return None, None  # rank 0 alone writes snapshots
        p = self.param
        hdf5 = p.snapshot_format == caffe_pb2.SolverParameter.HDF5
        if hdf5:
            model = self.snapshot_filename(".caffemodel.h5")
            logger.info("Snapshotting to HDF5 file %s", model)
            self.net.save_hdf5(model, write_diff=p.snapshot_diff)
            state = self.snapshot_filename(".solverstate.h5")
        else:
            model = self.snapshot_filename(".caffemodel")
            logger.info("Snapshotting to binary proto file %s", model)
            save_caffemodel(model, self.net.to_proto(write_diff=p.snapshot_diff))
            state = self.snapshot_filename(".solverstate")
        nets = resume.collect(self)
        if train_states is not None:
            nets["train"] = train_states
        # The sidecar goes first: a state file netdef wrote always has its sidecar.
        resume.write(resume.sidecar_path(state), self.iter, state, nets)
        if hdf5:
            logger.info("Snapshotting solver state to HDF5 file %s", state)
            state_io.write_state_hdf5(state, self.iter, model, self.lr.current_step,
                                      self.history_blobs())
        else:
            logger.info("Snapshotting solver state to binary proto file %s", state)
            state_io.write_state_proto(state, self.iter, model, self.lr.current_step,
                                       self.history_blobs())
        return model, state

    def restore(self, path):
        """Resume from a ``.solverstate`` (binary) or ``.solverstate.h5`` -- Caffe's or
        ours; with our sidecar beside it, data layers and random streams continue too.
        In a data-parallel run rank 0 reads the files and hands the state to the others
        (their data layers continue at the same batch of their own shard)."""
        if self.world is None or self.world.is_root:
            self._restore_files(path)
        if self.world is not None:
            self.world.share_restored(self)

    def _restore_files(self, path):
        it, learned, step, hist = state_io.read_state(path)
        mine = self.history_blobs()
        if len(hist) != len(mine):
            raise SolverError(f"solver state '{path}' holds {len(hist)} history blobs; this "
                              f"{self.type} solver needs {len(mine)}")
        for k, (src, dst) in enumerate(zip(hist, mine)):
            if src.size != dst.size:
                raise SolverError(f"solver state '{path}': history blob {k} has {src.size} "
                                  f"values, the net's parameter has {dst.size}")
        learned = state_io.locate_learned_net(learned, path)
        if learned:
            self.net.copy_from(learned)
        for src, dst in zip(hist, mine):
            dst[...] = src.reshape(dst.shape)
        self.iter = it
        self.lr.current_step = step
        resume.restore(self, path, it)


def _copy(message):
    out = type(message)()
    out.CopyFrom(message)
    return out


def _checked_copy(param, solver_path):
    """A private copy of ``param``, upgraded and checked as Caffe's Solver does."""
    from ..upgrade import upgrade_solver_param

    p = _copy(param)
    upgrade_solver_param(p, solver_path or "SolverParameter")
    if solver_path:
        _default_snapshot_prefix(p, solver_path)
    if (p.type or "SGD") not in TYPE_NAMES.values():
        raise SolverError(f"unknown solver type {p.type!r} (known: "
                          f"{', '.join(TYPE_NAMES.values())})")
    if p.regularization_type not in ("L1", "L2"):
        raise SolverError(f"unknown regularization_type {p.regularization_type!r} "
                          "(known: L1, L2)")
    if p.iter_size < 1:
        raise SolverError(f"iter_size must be at least 1, not {p.iter_size}")
    if p.average_loss < 1:
        raise SolverError(f"average_loss must be at least 1, not {p.average_loss}")
    if p.type in ("AdaGrad", "RMSProp") and p.momentum != 0:
        raise SolverError(f"momentum cannot be used with {p.type} (momentum: {p.momentum:g}); "
                          "remove it from the solver")
    if p.type == "RMSProp" and not 0 <= p.rms_decay < 1:
        raise SolverError(f"rms_decay must lie in [0, 1), not {p.rms_decay:g}")
    return p


def _default_snapshot_prefix(p, solver_path):
    """Caffe master: no prefix -> the solver file's path without extension; a prefix that
    is a folder -> that folder / the solver file's stem."""
    stem = os.path.splitext(solver_path)[0]
    if not p.HasField("snapshot_prefix"):
        p.snapshot_prefix = stem
        logger.info("snapshot_prefix was not specified and is set to %s", p.snapshot_prefix)
    elif os.path.isdir(p.snapshot_prefix):
        p.snapshot_prefix = os.path.join(p.snapshot_prefix, os.path.basename(stem))
        logger.info("snapshot_prefix was a directory and is replaced to %s", p.snapshot_prefix)


def _batch_size(net):
    for name in net.inputs or list(net.blobs)[:1]:
        shape = net.blobs[name].shape
        if shape:
            return shape[0]
    return 1


def _hms(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
