"""The benchmark nets: a real prototxt with its data layers replaced by random Input blobs."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = os.path.join(ROOT, "examples", "mnist", "lenet_train_test.prototxt")
CIFAR = os.path.join(ROOT, "models", "cifar10_quick", "deploy.prototxt")
CAFFENET = os.path.join(ROOT, "models", "caffenet", "deploy.prototxt")


def with_random_input(path, name, data_shape, drop, loss_bottom=None):
    """``path``'s layers minus the types in ``drop``, fed by an Input of data + label;
    ``loss_bottom``: add a SoftmaxWithLoss on that blob (for deploy nets)."""
    from netdef.proto import caffe_pb2
    from netdef.prototxt import read_net_param

    src = read_net_param(path)
    net = caffe_pb2.NetParameter()
    net.name = name
    inp = net.layer.add()
    inp.name, inp.type = "input", "Input"
    inp.top.extend(["data", "label"])
    inp.input_param.shape.add().dim.extend(data_shape)
    inp.input_param.shape.add().dim.extend(data_shape[:1])
    for layer in src.layer:
        if layer.type not in drop:
            net.layer.add().CopyFrom(layer)
    if loss_bottom:
        loss = net.layer.add()
        loss.name, loss.type = "loss", "SoftmaxWithLoss"
        loss.bottom.extend([loss_bottom, "label"])
        loss.top.append("loss")
    return net


def lenet_bench_net(batch):
    """LeNet's train net (without its LMDB and Accuracy layers)."""
    return with_random_input(LENET, "LeNet-bench", [batch, 1, 28, 28], ("Data", "Accuracy"))


def cifar_bench_net(batch):
    """CIFAR10-quick's deploy net with a softmax loss in place of its Softmax."""
    from netdef.prototxt import read_net_param

    last = read_net_param(CIFAR).layer[-1].bottom[0]
    return with_random_input(CIFAR, "CIFAR10-quick-bench", [batch, 3, 32, 32],
                             ("Input", "Softmax"), loss_bottom=last)


def caffenet_bench_net(batch):
    """BVLC CaffeNet's deploy net (227x227 input, MAX pooling before each LRN, grouped
    conv2/4/5, fc6/fc7 with ReLU + Dropout) with a softmax loss in place of its Softmax,
    and Gaussian weights (std 0.01) so the activations are not all zero."""
    net = with_random_input(CAFFENET, "CaffeNet-bench", [batch, 3, 227, 227],
                            ("Input", "Softmax"), loss_bottom="fc8")
    for layer in net.layer:
        param = {"Convolution": layer.convolution_param,
                 "InnerProduct": layer.inner_product_param}.get(layer.type)
        if param is not None:
            param.weight_filler.type, param.weight_filler.std = "gaussian", 0.01
            param.bias_filler.type, param.bias_filler.value = "constant", 0.1
    return net


BENCH_NETS = {"lenet": lenet_bench_net, "cifar": cifar_bench_net,
              "caffenet": caffenet_bench_net}


def bench_solver(net, batch):
    """An SGD solver (LeNet's stock settings) on bench net ``net`` ("lenet", "cifar",
    "caffenet") at ``batch``; never snapshots."""
    from netdef.proto import caffe_pb2
    from netdef.solvers import Solver

    param = caffe_pb2.SolverParameter()
    param.net_param.CopyFrom(BENCH_NETS[net](batch))
    param.base_lr, param.momentum, param.weight_decay = 0.01, 0.9, 5e-4
    param.lr_policy, param.gamma, param.power = "inv", 1e-4, 0.75
    param.max_iter, param.random_seed = 10 ** 6, 1
    param.snapshot_after_train = False
    return Solver(param)


def fill_random(solver, seed, classes):
    """Uniform [0, 1) data and labels in 0..classes-1 in the train net's Input blobs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data, label = solver.net.blobs["data"], solver.net.blobs["label"]
    data.data[...] = rng.random(data.shape, dtype=np.float32)
    label.data[...] = rng.integers(0, classes, label.shape)
