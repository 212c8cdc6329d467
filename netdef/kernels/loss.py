"""Kernels of the loss layers and of Accuracy.

Labels arrive as float32 (as Caffe stores them) and are truncated toward zero like
``static_cast<int>``.  Forward kernels return the raw sum (float64) and the number of
counted (non-ignored) labels; the layer divides by its normalizer.  A kernel that meets
a label outside [0, channels) returns its flat index as ``bad`` (-1 when all are fine)
so the layer can raise an error that names it; Caffe would read out of bounds there.
Backward kernels overwrite the bottom diff, already multiplied by ``scale`` (the loss
weight over the normalizer).
"""

import numpy as np
from numba import njit

FLT_MIN = np.float32(1.17549435e-38)
LOG_THRESHOLD = np.float32(1e-20)  # Caffe's kLOG_THRESHOLD


# -- SoftmaxWithLoss -----------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def softmax_loss_forward(prob, label, has_ignore, ignore_label):
    """-sum log(prob[label]) over the counted positions.

    prob: (outer, C, inner); label: (outer, inner).  Returns (loss, count, bad).
    """
    outer, channels, inner = prob.shape
    loss = 0.0
    count = 0
    for o in range(outer):
        for j in range(inner):
            lab = int(label[o, j])
            if has_ignore and lab == ignore_label:
                continue
            if lab < 0 or lab >= channels:
                return loss, count, o * inner + j
            loss -= np.log(max(prob[o, lab, j], FLT_MIN))
            count += 1
    return loss, count, -1


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_loss_backward(dx, prob, label, has_ignore, ignore_label, scale):
    """dx: (outer, C, inner) = scale * (prob - onehot(label)); zero where ignored."""
    outer, channels, inner = prob.shape
    for o in range(outer):
        for c in range(channels):
            for j in range(inner):
                dx[o, c, j] = prob[o, c, j]
        for j in range(inner):
            lab = int(label[o, j])
            if has_ignore and lab == ignore_label:
                for c in range(channels):
                    dx[o, c, j] = 0.0
            else:
                dx[o, lab, j] -= 1.0
        for c in range(channels):
            for j in range(inner):
                dx[o, c, j] *= scale


# -- SigmoidCrossEntropyLoss ---------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_cross_entropy_forward(x, target, has_ignore, ignore_label):
    """Cross-entropy of sigmoid(x) against target, written so exp never overflows.

    x, target: (count,).  Returns (loss, valid_count).
    """
    loss = 0.0
    valid = 0
    for i in range(x.shape[0]):
        if has_ignore and int(target[i]) == ignore_label:
            continue
        v = x[i]
        pos = np.float32(1.0) if v >= 0 else np.float32(0.0)
        loss -= v * (target[i] - pos) - np.log1p(np.exp(v - 2 * v * pos))
        valid += 1
    return loss, valid


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_cross_entropy_backward(dx, x, target, has_ignore, ignore_label, scale):
    """dx: (count,) = scale * (sigmoid(x) - target); zero where ignored."""
    for i in range(x.shape[0]):
        if has_ignore and int(target[i]) == ignore_label:
            dx[i] = 0.0
        else:
            s = np.float32(0.5) * np.tanh(np.float32(0.5) * x[i]) + np.float32(0.5)
            dx[i] = scale * (s - target[i])


# -- MultinomialLogisticLoss ---------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def multinomial_logistic_forward(prob, label):
    """-sum_i log(max(prob[i, label_i], 1e-20)).  prob: (num, dim); label: (num,)."""
    num, dim = prob.shape
    loss = 0.0
    for i in range(num):
        lab = int(label[i])
        if lab < 0 or lab >= dim:
            return loss, i
        loss -= np.log(max(prob[i, lab], LOG_THRESHOLD))
    return loss, -1


@njit(cache=True, nogil=True, error_model="numpy")
def multinomial_logistic_backward(dx, prob, label, scale):
    """dx: (num, dim) = -scale / prob at each label, 0 elsewhere."""
    num, dim = prob.shape
    for i in range(num):
        for k in range(dim):
            dx[i, k] = 0.0
        lab = int(label[i])
        dx[i, lab] = -scale / max(prob[i, lab], LOG_THRESHOLD)


# -- InfogainLoss ----------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def infogain_forward(prob, label, infogain, has_ignore, ignore_label):
    """-sum H[label, l] * log(max(prob[l], 1e-20)) over counted positions.

    prob: (outer, C, inner); label: (outer, inner); infogain: (C, C).
    Returns (loss, count, bad).
    """
    outer, channels, inner = prob.shape
    loss = 0.0
    count = 0
    for o in range(outer):
        for j in range(inner):
            lab = int(label[o, j])
            if has_ignore and lab == ignore_label:
                continue
            if lab < 0 or lab >= channels:
                return loss, count, o * inner + j
            for c in range(channels):
                loss -= infogain[lab, c] * np.log(max(prob[o, c, j], LOG_THRESHOLD))
            count += 1
    return loss, count, -1


@njit(cache=True, nogil=True, error_model="numpy")
def infogain_row_sums(out, infogain):
    """out: (C,) = sum over each row of infogain: (C, C)."""
    n = infogain.shape[0]
    for r in range(n):
        s = np.float32(0.0)
        for c in range(n):
            s += infogain[r, c]
        out[r] = s


@njit(cache=True, nogil=True, error_model="numpy")
def infogain_backward(dx, prob, label, infogain, row_sums, has_ignore, ignore_label, scale):
    """dx: (outer, C, inner) = scale * (prob * rowsum(H)[label] - H[label, :]).

    The gradient through the layer's own softmax; zero where the label is ignored.
    """
    outer, channels, inner = prob.shape
    for o in range(outer):
        for j in range(inner):
            lab = int(label[o, j])
            if has_ignore and lab == ignore_label:
                for c in range(channels):
                    dx[o, c, j] = 0.0
            else:
                rs = row_sums[lab]
                for c in range(channels):
                    dx[o, c, j] = scale * (prob[o, c, j] * rs - infogain[lab, c])


# -- HingeLoss -------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def hinge_forward(margin, x, label, squared):
    """margin: (num, dim) = max(0, 1 + x * (-1 at the label, +1 elsewhere)).

    Returns (sum of margins -- of their squares when ``squared`` --, bad).
    """
    num, dim = x.shape
    total = 0.0
    for i in range(num):
        lab = int(label[i])
        if lab < 0 or lab >= dim:
            return total, i
        for k in range(dim):
            v = x[i, k]
            if k == lab:
                v = -v
            m = max(np.float32(0.0), np.float32(1.0) + v)
            margin[i, k] = m
            total += m * m if squared else m
    return total, -1


@njit(cache=True, nogil=True, error_model="numpy")
def hinge_backward(dx, margin, label, squared, scale):
    """dx: (num, dim) = scale * t * (margin for L2, sign(margin) for L1), t = -1 at the label."""
    num, dim = margin.shape
    for i in range(num):
        lab = int(label[i])
        for k in range(dim):
            m = margin[i, k]
            if not squared:
                m = np.float32(1.0) if m > 0 else np.float32(0.0)
            if k == lab:
                m = -m
            dx[i, k] = scale * m


# -- EuclideanLoss ---------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def euclidean_forward(diff, a, b):
    """diff: (count,) = a - b; returns sum(diff ** 2)."""
    total = 0.0
    for i in range(a.shape[0]):
        d = a[i] - b[i]
        diff[i] = d
        total += d * d
    return total


# -- ContrastiveLoss -------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def contrastive_forward(diff, dist_sq, a, b, similar, margin, legacy):
    """Sum over pairs of d^2 (similar) or max(margin - d, 0)^2 (dissimilar).

    With ``legacy`` a dissimilar pair costs max(margin - d^2, 0) instead.
    diff, a, b: (num, dim); dist_sq, similar: (num,).
    """
    num, dim = a.shape
    loss = 0.0
    for i in range(num):
        s = np.float32(0.0)
        for k in range(dim):
            d = a[i, k] - b[i, k]
            diff[i, k] = d
            s += d * d
        dist_sq[i] = s
        if int(similar[i]) != 0:
            loss += s
        elif legacy:
            loss += max(margin - s, np.float32(0.0))
        else:
            m = max(margin - np.sqrt(s), np.float32(0.0))
            loss += m * m
    return loss


@njit(cache=True, nogil=True, error_model="numpy")
def contrastive_backward(dx, diff, dist_sq, similar, margin, legacy, alpha):
    """dx: (num, dim), the gradient for one feature bottom; alpha = +-loss_weight / num."""
    num, dim = diff.shape
    for i in range(num):
        if int(similar[i]) != 0:
            coeff = alpha
        else:
            if legacy:
                gap = margin - dist_sq[i]
                coeff = -alpha
            else:
                dist = np.sqrt(dist_sq[i])
                gap = margin - dist
                coeff = -alpha * gap / (dist + np.float32(1e-4))
            if not gap > 0:
                coeff = np.float32(0.0)
        for k in range(dim):
            dx[i, k] = coeff * diff[i, k]


# -- Accuracy --------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def accuracy_forward(x, label, top_k, has_ignore, ignore_label, class_hits, class_counts):
    """Count the positions whose label is among the ``top_k`` highest scores.

    x: (outer, C, inner); label: (outer, inner); class_hits, class_counts: (C,) float32,
    overwritten with the per-class hit and label counts.  A score equal to the true
    class's counts as better (ties go against the prediction, as in Caffe).
    Returns (hits, count, bad).
    """
    outer, channels, inner = x.shape
    for c in range(channels):
        class_hits[c] = 0.0
        class_counts[c] = 0.0
    hits = 0
    count = 0
    for o in range(outer):
        for j in range(inner):
            lab = int(label[o, j])
            if has_ignore and lab == ignore_label:
                continue
            if lab < 0 or lab >= channels:
                return hits, count, o * inner + j
            class_counts[lab] += 1.0
            truth = x[o, lab, j]
            better = -1  # the true class counts itself
            for c in range(channels):
                if x[o, c, j] >= truth:
                    better += 1
                    if better >= top_k:
                        break
            if better < top_k:
                hits += 1
                class_hits[lab] += 1.0
            count += 1
    return hits, count, -1
