"""Per-layer timing of a Net (``netdef time`` and the benchmarks share it)."""

import time


def time_net(net, iterations):
    """Average forward/backward milliseconds per layer over ``iterations`` passes."""
    n = len(net.layers)
    fwd = [0.0] * n
    bwd = [0.0] * n
    total_f = total_b = 0.0
    t_all = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        for i, layer in enumerate(net.layers):
            t = time.perf_counter()
            layer.forward(net.bottom_vecs[i], net.top_vecs[i])
            fwd[i] += time.perf_counter() - t
        t1 = time.perf_counter()
        for i in range(n - 1, -1, -1):
            t = time.perf_counter()
            if net.layer_need_backward[i]:
                net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                                       net.bottom_vecs[i])
            bwd[i] += time.perf_counter() - t
        t2 = time.perf_counter()
        total_f += t1 - t0
        total_b += t2 - t1
    total = time.perf_counter() - t_all
    k = 1000.0 / max(iterations, 1)
    return {
        "layers": [{"name": net._layer_names[i], "type": net.layers[i].type,
                    "forward_ms": fwd[i] * k, "backward_ms": bwd[i] * k} for i in range(n)],
        "forward_ms": total_f * k,
        "backward_ms": total_b * k,
        "forward_backward_ms": (total_f + total_b) * k,
        "total_ms": total * 1000.0,
    }
