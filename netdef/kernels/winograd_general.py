"""Winograd F(m x m, r x r) for any output tile m and odd or even kernel r: a stride-1 r x r
convolution with (m + r - 1)^2 multiplies per m x m output tile instead of m^2 r^2
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks").  F(4x4, 5x5)
multiplies 6.25x less than the direct convolution.

With A = m + r - 1, the transforms are small matrices built from A - 1 interpolation
points and the point at infinity (``transforms``):

    U[e, k, c] = (G w[k, c] G^T)[e]        weights, (A*A, K, C)
    V[e, c, t] = (B^T d[c, t] B)[e]         A x A input tiles d (stride m), (A*A, C, T)
    M[e]       = U[e] @ V[e]                 np.matmul, (A*A, K, T)
    y[tile]    = A^T M[:, k, t] A (+ bias)   m x m outputs per tile

with T = N * tiles_h * tiles_w.  T runs over chunks of ``Workspace.chunk`` images in
order; inside a chunk of nc images, image n's tile (th, tw) is column
(th * tiles_w + tw) * nc + n.  Each transform is separable (rows, then columns), and with
the images innermost its loops run over unit-stride runs of (tile, image) that the
compiler vectorises, even for small images.  With too few images for that, the input
transform runs over (tile, channel) in bands of tile rows, V keeps the channels
innermost (the GEMM reads it transposed) and M's chunks hold one image
(``transform_input_bands``).  Grouped layers multiply each group's row blocks of U, V
and M.  The data gradient of a convolution is this same product with the filters rotated
by 180 degrees and their in/out channels swapped (per group), padding r - 1 - pad
(``flip_filters``); the weight gradient is the adjoint of the forward
(``weight_gradient``).
"""

from fractions import Fraction

import numpy as np
from numba import njit, prange

from .gate import one_thread_below, set_num_threads

_U = np.uint64

# Interpolation points per tile side A (A - 1 finite points; infinity is the last).  Small
# magnitudes and reciprocal pairs keep float32 round-off near the direct convolution's:
# F(4x4, 5x5) on unit-variance data measured 3e-6 of the output's magnitude.
POINTS = {
    4: (0, 1, -1),
    6: (0, 1, -1, 2, -2),
    7: (0, 1, -1, 2, -2, Fraction(1, 2)),
    8: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}

# Floats of scratch per transform task: a chunk of images as large as fits (the longer
# the (tile, image) runs, the better the loops vectorise -- CIFAR10-quick's conv2 input
# transform took 5.6 ms in chunks of 16 images, 2.6 ms in one chunk of 100).
SCRATCH_FLOATS = 1 << 17
# Fewest images per chunk whose (tile, image) runs vectorise well; below, the input
# transform runs over (tile, channel) in bands of tile rows (``transform_input_bands``).
MIN_RUN_IMAGES = 8
# Fewest input-transform tasks in bands mode (so that threads share the work evenly).
BAND_TASKS = 8

# Floats added to each of the A*A rows of V and M so rows are not a multiple of 4 KiB
# apart (the output transform reads A rows at once; see winograd.ROW_PAD).
ROW_PAD = 16
# Fewest M columns one output-transform task runs over at a time (a block of channels
# when a chunk holds the whole batch).
OUTPUT_RUN = 128
# Columns the output transform's A^T passes take at a time (their scratch then fits L1).
SUBRUN = 256


def transforms(m, r):
    """(A^T, G, B^T) of F(m, r) as float32 (m x A, A x r, A x A), exact rationals rounded once.

    A^T evaluates the product polynomial at the points, G evaluates the kernel polynomial
    (scaled by the Lagrange denominators), and B^T is the unique matrix that makes
    A^T [(G g) * (B^T d)] the correlation of d with g for every d and g (solved exactly).
    """
    a = m + r - 1
    if a not in POINTS:
        raise ValueError(f"no interpolation points for F({m}, {r}) (tile side {a})")
    pts = [Fraction(p) for p in POINTS[a]]
    at = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for p in pts:
        denom = Fraction(1)
        for q in pts:
            if q != p:
                denom *= p - q
        g.append([p ** k / denom for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    bt = [[None] * a for _ in range(a)]
    for col in range(a):
        coeffs = _solve([[at[i][j] * g[j][k] for j in range(a)]
                         for i in range(m) for k in range(r)],
                        [Fraction(int(col == i + k)) for i in range(m) for k in range(r)])
        for j in range(a):
            bt[j][col] = coeffs[j]
    as32 = lambda rows: np.array([[float(v) for v in row] for row in rows], np.float32)  # noqa: E731
    return as32(at), as32(g), as32(bt)


def _solve(rows, rhs):
    """The exact solution x of rows @ x = rhs (consistent, full column rank), by Gauss-Jordan
    elimination over the rationals."""
    n = len(rows[0])
    aug = [list(r) + [v] for r, v in zip(rows, rhs, strict=True)]
    pivot_rows = []
    for col in range(n):
        p = next(i for i in range(len(aug)) if i not in pivot_rows and aug[i][col] != 0)
        pivot_rows.append(p)
        aug[p] = [v / aug[p][col] for v in aug[p]]
        for i in range(len(aug)):
            if i != p and aug[i][col] != 0:
                f = aug[i][col]
                aug[i] = [v - f * w for v, w in zip(aug[i], aug[p], strict=True)]
    if any(aug[i][n] != 0 for i in range(len(aug)) if i not in pivot_rows):
        raise ArithmeticError("inconsistent Winograd system")
    return [aug[p][n] for p in pivot_rows]


def tiles(out_h, out_w, m):
    """Tiles per output row and column."""
    return (out_h + m - 1) // m, (out_w + m - 1) // m


def sparse_plan(coef):
    """A coefficient matrix as (values, column indices, groups): each row's nonzero entries
    in groups of four (the last padded with zero coefficients on the row's first column),
    so a combination pass reads four source rows per write -- 1.5x fewer loads and stores
    than one pass per entry."""
    rows, width = coef.shape
    slots = 4 * max(1, -(-int((coef != 0).sum(axis=1).max()) // 4))
    values = np.zeros((rows, slots), np.float32)
    columns = np.zeros((rows, slots), np.uint64)
    groups = np.zeros(rows, np.int64)
    for r in range(rows):
        nz = np.flatnonzero(coef[r])
        values[r, :nz.size] = coef[r, nz]
        columns[r, :] = nz[0] if nz.size else 0
        columns[r, :nz.size] = nz
        groups[r] = -(-nz.size // 4)
    return values, columns, groups


@njit(cache=True, nogil=True, inline="always")
def _combine(plan, row, src, src_off, step, dst, dst_off, n):
    """dst[dst_off:+n] = sum_j coef[row, j] * src[src_off + j*step:+n] over ``plan`` (see
    ``sparse_plan``); flat arrays and unsigned offsets, so numba emits no negative-index
    test and the loops vectorise."""
    values, columns, groups = plan
    for grp in range(groups[row]):
        s = 4 * grp
        _combine4(values[row, s], values[row, s + 1], values[row, s + 2], values[row, s + 3],
                  src, src_off + columns[row, s] * step, src_off + columns[row, s + 1] * step,
                  src_off + columns[row, s + 2] * step, src_off + columns[row, s + 3] * step,
                  dst, dst_off, n, grp == 0)
    if groups[row] == 0:
        for t in range(n):
            dst[dst_off + t] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _combine_at(plan, row, src, src_off, offsets, dst, dst_off, n):
    """``_combine`` with column j of the source at src_off + offsets[j] (a layout that is
    not one step per column, such as the input transform's phases)."""
    values, columns, groups = plan
    for grp in range(groups[row]):
        s = 4 * grp
        _combine4(values[row, s], values[row, s + 1], values[row, s + 2], values[row, s + 3],
                  src, src_off + offsets[columns[row, s]], src_off + offsets[columns[row, s + 1]],
                  src_off + offsets[columns[row, s + 2]],
                  src_off + offsets[columns[row, s + 3]], dst, dst_off, n, grp == 0)
    if groups[row] == 0:
        for t in range(n):
            dst[dst_off + t] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _combine4(f0, f1, f2, f3, src, o0, o1, o2, o3, dst, dst_off, n, first):
    """dst[dst_off:+n] (= if ``first``, else +=) f0 src[o0:+n] + ... + f3 src[o3:+n]."""
    if first:
        for t in range(n):
            dst[dst_off + t] = (f0 * src[o0 + t] + f1 * src[o1 + t]
                                + f2 * src[o2 + t] + f3 * src[o3 + t])
    else:
        for t in range(n):
            dst[dst_off + t] += (f0 * src[o0 + t] + f1 * src[o1 + t]
                                 + f2 * src[o2 + t] + f3 * src[o3 + t])


@njit(cache=True, nogil=True, parallel=True)
def transform_input(x, v, bt, m, pad_h, pad_w, tiles_h, tiles_w, chunk):
    """v[a*A + b, c*T + t] = (B^T d B)[a, b], d the A x A input tile t of channel c (zero
    outside x).  x: (N, C, H, W); v: (A*A, >= C*T); tile order as in the module docstring;
    bt: B^T as a ``sparse_plan``.

    One parallel task per channel and chunk of ``chunk`` images ("lanes"), whose planes
    are first copied into a scratch (``_scratch_rows``); B^T then runs along every padded
    row once (tiles overlap, so a tile row would repeat it) and down the tiles' columns,
    both over unit-stride runs of (tile column, lane), the second straight into V.
    """
    N, C, H, W = x.shape
    a_ = bt[0].shape[0]
    per_image = _U(tiles_h * tiles_w)
    T = _U(N) * per_image
    hp = (tiles_h - 1) * m + a_
    k1 = _U(tiles_w + (a_ - 1) // m)
    n_chunks = (N + chunk - 1) // chunk
    xf = x.reshape(-1)
    vf = v.reshape(-1)
    row_v = _U(v.shape[1])
    saved = one_thread_below(4 * v.size)
    for task in prange(C * n_chunks):
        c = task // n_chunks
        n0 = (task - c * n_chunks) * chunk
        lanes = _U(min(N, n0 + chunk) - n0)
        run = _U(tiles_w) * lanes               # one (tile column, image) run
        rows = _scratch_rows(xf, _U((n0 * C + c) * H * W), _U(C * H * W), lanes, H, W,
                             -pad_h, hp, pad_w, bt, m, k1)
        _columns_to_v(bt, m, rows, run, _U(tiles_h), vf, row_v,
                      _U(c) * T + _U(n0) * per_image)
    set_num_threads(saved)


@njit(cache=True, nogil=True, parallel=True)
def transform_input_bands(x, v, bt, m, pad_h, pad_w, tiles_h, tiles_w, band):
    """v[a*A + b, (n*P + t)*C + c] = (B^T d B)[a, b] for tile t of channel c of image n
    (P tiles an image): V with the channels innermost, which the GEMM reads as a
    transposed (C, T) operand.  For few, large images: one parallel task per image and
    band of ``band`` tile rows, all channels as the lanes, so both passes run over
    (tile column, channel) and write V without a transposition (the channel-innermost
    scratch of the task's rows is the only one)."""
    N, C, H, W = x.shape
    a_ = bt[0].shape[0]
    aa, mu = _U(a_), _U(m)
    per_image = _U(tiles_h * tiles_w)
    k1 = _U(tiles_w + (a_ - 1) // m)
    n_bands = (tiles_h + band - 1) // band
    lanes = _U(C)
    run = _U(tiles_w) * lanes
    xf = x.reshape(-1)
    vf = v.reshape(-1)
    row_v = _U(v.shape[1])
    saved = one_thread_below(4 * v.size)
    for task in prange(N * n_bands):
        n = task // n_bands
        th0 = (task - n * n_bands) * band
        bands = _U(min(tiles_h, th0 + band) - th0)
        rows = _scratch_rows(xf, _U(n * C * H * W), _U(H * W), lanes, H, W, th0 * m - pad_h,
                             (bands - 1) * mu + aa, pad_w, bt, m, k1)
        _columns_to_v(bt, m, rows, run, bands, vf, row_v,
                      (_U(n) * per_image + _U(th0) * _U(tiles_w)) * lanes)
    set_num_threads(saved)


@njit(cache=True, nogil=True, inline="always")
def _columns_to_v(bt, m, rows, run, tile_rows, vf, row_v, base):
    """B^T down the tiles' columns of ``_scratch_rows``' output: tile row th's run of
    (tile column, lane) goes to V's row a*A + b at base + th*run."""
    aa, mu = _U(bt[0].shape[0]), _U(m)
    for a in range(aa):
        for b in range(aa):
            for th in range(tile_rows):
                _combine(bt, a, rows, (th * mu * aa + b) * run, aa * run, vf,
                         (a * aa + b) * row_v + base + th * run, run)


@njit(cache=True, nogil=True, inline="always")
def _scratch_rows(xf, src0, lane_step, lanes, H, W, h0, n_rows, pad_w, bt, m, k1):
    """B applied along ``n_rows`` padded rows from input row h0 (rows outside the image
    and columns in the padding read zero), for ``lanes`` planes src0 + l * lane_step:
    (row, b, tile column, lane).

    The rows are first copied into a scratch with the lanes innermost and each row's
    columns by phase: column w = m*k + p at (p, k, lane), so that column j of every tile
    of a row is one unit-stride run of (k, lane) from offsets[j]."""
    a_ = bt[0].shape[0]
    aa, mu = _U(a_), _U(m)
    prow = mu * k1 * lanes
    run = (k1 - _U((a_ - 1) // m)) * lanes
    offsets = np.empty(a_, np.uint64)
    for j in range(aa):
        offsets[j] = (_U(j) % mu * k1 + _U(j) // mu) * lanes
    place = np.empty(W, np.uint64)          # where x's column q goes in a scratch row
    for q in range(W):
        place[q] = (_U(q + pad_w) % mu * k1 + _U(q + pad_w) // mu) * lanes
    xs = np.zeros(_U(n_rows) * prow, np.float32)
    for r in range(_U(n_rows)):     # lanes inside rows: a scratch row stays in L1
        h = h0 + np.int64(r)
        if h < 0 or h >= H:
            continue
        for li in range(lanes):
            src = src0 + li * lane_step + _U(h) * _U(W)
            dst = r * prow + li
            for q in range(_U(W)):
                xs[dst + place[q]] = xf[src + q]
    rows = np.empty(_U(n_rows) * aa * run, np.float32)
    for r in range(_U(n_rows)):
        for b in range(aa):
            _combine_at(bt, b, xs, r * prow, offsets, rows, (r * aa + b) * run, run)
    return rows


@njit(cache=True, nogil=True, parallel=True)
def transform_output(mm, y, at, pairs, a_, bias, tiles_h, tiles_w, chunk, relu, slope):
    """y[n, k, th*m + i, tw*m + j] = act((A^T M[:, k, t] A)[i, j] + bias[k]) (cropped to y);
    act: a fused (leaky) ReLU max(z, 0) + slope * min(z, 0) when ``relu``.  mm: (A*A,
    >= K*T) in transform_input's tile order; y: (N, K, OH, OW); bias: (K,) or empty; at:
    A^T as a ``sparse_plan``, a_ = A; pairs: ``output_pairs(A^T)`` (empty: use ``at``).

    One task per chunk of images and block of output channels: with the whole batch in
    one chunk, the M columns of consecutive channels are contiguous, and a block of them
    makes runs of at least ``OUTPUT_RUN`` columns (a batch-1 14 x 14 layer has only 16
    tiles per channel).  A^T goes down each tile column, then along each row, both over
    the task's run of columns; the tiles then go to their image planes.
    """
    N, K = y.shape[0], y.shape[1]
    n_chunks = (N + chunk - 1) // chunk
    per_block = 1
    if n_chunks == 1:
        per_block = max(1, min(K // 4, -(-OUTPUT_RUN // (N * tiles_h * tiles_w))))
    n_blocks = (K + per_block - 1) // per_block
    mf = mm.reshape(-1)
    yf = y.reshape(-1)
    row_m = _U(mm.shape[1])
    saved = one_thread_below(4 * mm.size)
    for task in prange(n_blocks * n_chunks):
        kb = task // n_chunks
        n0 = (task - kb * n_chunks) * chunk
        k0 = kb * per_block
        _output_task(mf, row_m, yf, y.shape, at, pairs, a_, bias, k0,
                     min(K, k0 + per_block) - k0, n0, min(N, n0 + chunk) - n0, tiles_h,
                     tiles_w, relu, slope)
    set_num_threads(saved)


@njit(cache=True, nogil=True)
def _output_task(mf, row_m, yf, shape, at, pairs, a_, bias, k0, kn, n0, nc, tiles_h, tiles_w,
                 relu, slope):
    """``transform_output`` for channels k0... (kn of them) of images n0... (nc).  A
    function of its own with one call site per helper: numba took 30 s to compile the
    kernel with this body inlined in the parallel loop and both A^T passes written out,
    13 s this way, and it runs as fast."""
    N, K, OH, OW = shape
    m = at[0].shape[0]
    aa, mu = _U(a_), _U(m)
    per_image = tiles_h * tiles_w
    T = N * per_image
    sl = np.float32(slope)
    cnt = _U(per_image * nc)
    run = cnt * _U(kn)
    t0 = _U(k0 * T + n0 * per_image)
    rows = np.empty(m * a_ * SUBRUN, np.float32)
    out = np.empty(m * m * run, np.float32)
    sub = _U(SUBRUN)
    for r0 in range(_U(0), run, sub):              # pieces whose rows stay in L1
        n = min(sub, run - r0)
        # A^T down each tile column (M -> rows[i*A + col]), then along each row (rows ->
        # out); one call site each, which halves what numba compiles
        for p in range(aa + mu):
            down = p < aa
            src = mf if down else rows
            dst = rows if down else out
            if down:
                s0, step, d0, dstep = p * row_m + t0 + r0, aa * row_m, p * sub, aa * sub
            else:
                i = p - aa
                s0, step, d0, dstep = i * aa * sub, sub, i * mu * run + r0, run
            if pairs.size:
                _pairs_at(pairs, src, s0, step, dst, d0, dstep, n)
            else:
                for q in range(mu):
                    _combine(at, q, src, s0, step, dst, d0 + q * dstep, n)
    for kk in range(kn):
        k = k0 + kk
        b = bias[k] if bias.size > 0 else np.float32(0.0)
        base = _U(kk) * cnt
        if nc == 1 and m == 4:
            _tiles_to_plane4(out, base, run, yf, _U((n0 * K + k) * OH * OW), tiles_h,
                             tiles_w, OH, OW, b, relu, sl)
        elif m == 4:        # a constant tile side: 3x faster pixel loops (CIFAR conv2)
            _tile_pixels(out, base, run, _U(nc), yf, _U(n0), _U(K * OH * OW),
                         _U(k * OH * OW), tiles_h, tiles_w, _U(4), OH, OW, True, b, relu, sl)
        else:
            _tile_pixels(out, base, run, _U(nc), yf, _U(n0), _U(K * OH * OW),
                         _U(k * OH * OW), tiles_h, tiles_w, mu, OH, OW, True, b, relu, sl)


def output_pairs(at):
    """The finite points p of A^T (m = 4) when they come in pairs (p, -p) after the point 0
    and before infinity -- POINTS for A = 6 and 8 -- as float32; else empty (the general
    ``sparse_plan`` route).  With pairs, each output row is a sum over the pairs of
    p^i (x_p + (-1)^i x_-p), which ``_pairs_at`` computes reading 1.7x (A = 6) to 2x (A = 8)
    fewer floats."""
    m, a_ = at.shape
    none = np.zeros(0, np.float32)
    if m != 4 or a_ % 2 or a_ < 4:
        return none
    pts = at[1, 1:a_ - 1:2]
    expect = np.zeros_like(at)
    expect[0, 0] = expect[m - 1, a_ - 1] = 1.0
    for q, p in enumerate(pts):
        for i in range(m):
            expect[i, 1 + 2 * q] = p ** i
            expect[i, 2 + 2 * q] = (-p) ** i
    return pts.astype(np.float32) if np.array_equal(expect, at) else none


@njit(cache=True, nogil=True, inline="always")
def _pairs_at(pairs, src, s0, step, dst, d0, dstep, n):
    """dst[d0 + i*dstep + t] = (A^T x)[i] for i < 4, x[a] = src[s0 + a*step + t], t < n,
    A^T having ``output_pairs`` ``pairs`` (two or three).  One loop per output row: a
    loop storing to four rows would need more run-time overlap checks than LLVM makes
    before it vectorises; one body for both pair counts did not vectorise either
    (measured: 7x slower than these)."""
    if pairs.size == 2:
        _two_pairs_at(pairs[0], pairs[1], src, s0, step, dst, d0, dstep, n)
    else:
        _three_pairs_at(pairs[0], pairs[1], pairs[2], src, s0, step, dst, d0, dstep, n)


@njit(cache=True, nogil=True, inline="always")
def _two_pairs_at(p1, p2, src, s0, step, dst, d0, dstep, n):
    a1, b1, a2, b2 = s0 + step, s0 + _U(2) * step, s0 + _U(3) * step, s0 + _U(4) * step
    last = s0 + _U(5) * step
    e1, e2, e3 = d0 + dstep, d0 + _U(2) * dstep, d0 + _U(3) * dstep
    for t in range(n):
        dst[d0 + t] = src[s0 + t] + (src[a1 + t] + src[b1 + t]) + (src[a2 + t] + src[b2 + t])
    for t in range(n):
        dst[e1 + t] = p1 * (src[a1 + t] - src[b1 + t]) + p2 * (src[a2 + t] - src[b2 + t])
    for t in range(n):
        dst[e2 + t] = (p1 * p1 * (src[a1 + t] + src[b1 + t])
                       + p2 * p2 * (src[a2 + t] + src[b2 + t]))
    for t in range(n):
        dst[e3 + t] = (p1 * p1 * p1 * (src[a1 + t] - src[b1 + t])
                       + p2 * p2 * p2 * (src[a2 + t] - src[b2 + t]) + src[last + t])


@njit(cache=True, nogil=True, inline="always")
def _three_pairs_at(p1, p2, p3, src, s0, step, dst, d0, dstep, n):
    a1, b1, a2, b2 = s0 + step, s0 + _U(2) * step, s0 + _U(3) * step, s0 + _U(4) * step
    a3, b3, last = s0 + _U(5) * step, s0 + _U(6) * step, s0 + _U(7) * step
    e1, e2, e3 = d0 + dstep, d0 + _U(2) * dstep, d0 + _U(3) * dstep
    for t in range(n):
        dst[d0 + t] = (src[s0 + t] + (src[a1 + t] + src[b1 + t])
                       + (src[a2 + t] + src[b2 + t]) + (src[a3 + t] + src[b3 + t]))
    for t in range(n):
        dst[e1 + t] = (p1 * (src[a1 + t] - src[b1 + t]) + p2 * (src[a2 + t] - src[b2 + t])
                       + p3 * (src[a3 + t] - src[b3 + t]))
    for t in range(n):
        dst[e2 + t] = (p1 * p1 * (src[a1 + t] + src[b1 + t])
                       + p2 * p2 * (src[a2 + t] + src[b2 + t])
                       + p3 * p3 * (src[a3 + t] + src[b3 + t]))
    for t in range(n):
        dst[e3 + t] = (p1 * p1 * p1 * (src[a1 + t] - src[b1 + t])
                       + p2 * p2 * p2 * (src[a2 + t] - src[b2 + t])
                       + p3 * p3 * p3 * (src[a3 + t] - src[b3 + t]) + src[last + t])


@njit(cache=True, nogil=True, inline="always")
def _tiles_to_plane4(tiles, base, stride, planes, plane, tiles_h, tiles_w, OH, OW, b, relu,
                     slope):
    """``_tile_pixels`` writing one image's 4 x 4 tiles (pixel (i, j) of tile t at base +
    (4i + j)*stride + t): each output row gathers its four tile columns j from four
    unit-stride runs over the tiles (the general walk reads them one pixel at a time,
    ``stride`` apart); the row's cropped last tile, if any, goes pixel by pixel."""
    full = _U(OW // 4)
    tw_n = _U(tiles_w)
    for th in range(_U(tiles_h)):
        for i in range(_U(4)):
            oh = th * _U(4) + i
            if oh >= _U(OH):
                break
            row = plane + oh * _U(OW)
            s0 = base + (i * _U(4)) * stride + th * tw_n
            s1 = s0 + stride
            s2 = s1 + stride
            s3 = s2 + stride
            for tw in range(full):
                d = row + tw * _U(4)
                planes[d] = _output(tiles[s0 + tw], b, relu, slope)
                planes[d + _U(1)] = _output(tiles[s1 + tw], b, relu, slope)
                planes[d + _U(2)] = _output(tiles[s2 + tw], b, relu, slope)
                planes[d + _U(3)] = _output(tiles[s3 + tw], b, relu, slope)
            for ow in range(full * _U(4), _U(OW)):
                planes[row + ow] = _output(tiles[s0 + (ow & _U(3)) * stride + (ow >> _U(2))],
                                           b, relu, slope)


@njit(cache=True, nogil=True, inline="always")
def _output(v, b, relu, slope):
    """act(v + b): the fused (leaky) ReLU max(z, 0) + slope * min(z, 0) when ``relu``."""
    z = v + b
    if relu:
        zero = np.float32(0.0)
        z = max(z, zero) + slope * min(z, zero)
    return z


@njit(cache=True, nogil=True, inline="always")
def _tile_pixels(tiles, base, stride, nc, planes, n0, plane_step, plane_off, tiles_h, tiles_w,
                 m, OH, OW, to_planes, b, relu, slope):
    """Between a chunk's m*m tile rows (``tiles``: pixel (i, j) of image n's tile (th, tw) at
    base + (i*m + j)*stride + (th*tiles_w + tw)*nc + n) and the image planes (``planes``:
    image n0 + n at (n0 + n)*plane_step + plane_off): ``to_planes`` writes act(tile + b)
    out (act: the fused (leaky) ReLU when ``relu``), else copies the planes in and returns
    their sum.  Tile pixels past the image are skipped.  The images run inside each
    output row: a row's tile pixels for all of them stay in L1 (one image at a time
    swept the whole chunk of tiles, 100 KB at CIFAR10-quick's conv2, once per image)."""
    total = 0.0
    for th in range(_U(tiles_h)):
        for i in range(m):
            oh = th * m + i
            if oh >= OH:
                break
            for n in range(nc):
                row = (n0 + n) * plane_step + plane_off + oh * _U(OW)
                for tw in range(_U(tiles_w)):
                    t = base + (i * m) * stride + (th * _U(tiles_w) + tw) * nc + n
                    for j in range(m):
                        ow = tw * m + j
                        if ow < OW:
                            if to_planes:
                                planes[row + ow] = _output(tiles[t + j * stride], b, relu,
                                                           slope)
                            else:
                                z = planes[row + ow]
                                tiles[t + j * stride] = z
                                total += z
    return total


@njit(cache=True, nogil=True, parallel=True)
def transform_top_grad(dy, dm, at_t, m, tiles_h, tiles_w, chunk, bias_sums):
    """The output transform's adjoint: dm[a*A + b, k*T + t] = (A dy_tile A^T)[a, b], dy_tile
    the m x m top-gradient tile t of channel k (zero past the image), in transform_input's
    tile order; bias_sums[k, chunk] = the chunk's sum of dy[:, k] (when it has columns).
    dy: (N, K, OH, OW); dm: (A*A, >= K*T); at_t: A (A x m) as a ``sparse_plan``."""
    N, K, OH, OW = dy.shape
    a_ = at_t[0].shape[0]
    aa, mu = _U(a_), _U(m)
    per_image = tiles_h * tiles_w
    T = N * per_image
    n_chunks = (N + chunk - 1) // chunk
    want_bias = bias_sums.shape[1] > 0
    yf = dy.reshape(-1)
    df = dm.reshape(-1)
    row_m = _U(dm.shape[1])
    saved = one_thread_below(4 * dm.size)
    for task in prange(K * n_chunks):
        k = task // n_chunks
        q = task - k * n_chunks
        n0 = q * chunk
        nc = _U(min(N, n0 + chunk) - n0)
        cnt = _U(per_image) * nc
        g = np.zeros(m * m * cnt, np.float32)     # tile pixels past the image stay zero
        if m == 4:              # a constant tile side, as in transform_output
            total = _tile_pixels(g, _U(0), cnt, nc, yf, _U(n0), _U(K * OH * OW),
                                 _U(k * OH * OW), tiles_h, tiles_w, _U(4), OH, OW, False,
                                 np.float32(0.0), False, np.float32(0.0))
        else:
            total = _tile_pixels(g, _U(0), cnt, nc, yf, _U(n0), _U(K * OH * OW),
                                 _U(k * OH * OW), tiles_h, tiles_w, mu, OH, OW, False,
                                 np.float32(0.0), False, np.float32(0.0))
        if want_bias:
            bias_sums[k, q] = total
        rows = np.empty(m * a_ * cnt, np.float32)       # (i, b): A along each row
        for i in range(mu):
            for b in range(aa):
                _combine(at_t, b, g, i * mu * cnt, cnt, rows, (i * aa + b) * cnt, cnt)
        t0 = _U(k * T + n0 * per_image)
        for a in range(aa):                              # ... then down each column
            for b in range(aa):
                _combine(at_t, a, rows, b * cnt, aa * cnt, df, (a * aa + b) * row_m + t0, cnt)
    set_num_threads(saved)


@njit(cache=True, nogil=True)
def transform_filters(w, g, g_t, u):
    """u[a*A + b, k, c] = (G w[k, c] G^T)[a, b]; w: (K, C, r, r); u: (A*A, K, C); g, g_t: G
    and G^T as ``sparse_plan``s.  The filters are first turned into r*r rows over (k, c),
    so both passes run over unit-stride rows of K*C floats.  Serial: at CIFAR10-quick's
    64 x 32 x 5 x 5 one thread took 0.22 ms, two threads 0.34 ms."""
    K, C, r = w.shape[0], w.shape[1], w.shape[2]
    a_ = g[0].shape[0]
    aa, rr, kc = _U(a_), _U(r), _U(K * C)
    rows = np.empty(r * r * K * C, np.float32)
    _filters_to_rows(w.reshape(-1), rows, kc, rr * rr)
    t = np.empty(a_ * r * K * C, np.float32)
    for q in range(a_ * r):                    # t[a, j] = (G w)[a, j]
        a, j = _U(q) // rr, _U(q) % rr
        _combine(g, a, rows, j * kc, rr * kc, t, (a * rr + j) * kc, kc)
    uf = u.reshape(-1)
    for q in range(a_ * a_):                   # u[a, b] = (t G^T)[a, b]
        a, b = _U(q) // aa, _U(q) % aa
        _combine(g, b, t, a * rr * kc, kc, uf, (a * aa + b) * kc, kc)


@njit(cache=True, nogil=True, inline="always")
def _filters_to_rows(wf, rows, kc, per_filter):
    """rows[e, kc] = wf[kc, e] (a transpose of the (K*C, r*r) filters)."""
    for f in range(kc):
        for e in range(per_filter):
            rows[e * kc + f] = wf[f * per_filter + e]


@njit(cache=True, nogil=True)
def transform_filters_grad(du, g, g_t, dw):
    """The filter transform's adjoint, accumulated: dw[k, c] += G^T du[:, k, c] G, with du
    (A*A, K, C) reshaped to A x A per (k, c); dw: (K, C, r, r); g, g_t as in
    ``transform_filters``."""
    K, C, r = dw.shape[0], dw.shape[1], dw.shape[2]
    a_ = g[0].shape[0]
    aa, rr, kc = _U(a_), _U(r), _U(K * C)
    uf = du.reshape(-1)
    t = np.empty(a_ * r * K * C, np.float32)
    for q in range(a_ * r):                    # t[a, j] = (du G)[a, j]
        a, j = _U(q) // rr, _U(q) % rr
        _combine(g_t, j, uf, a * aa * kc, kc, t, (a * rr + j) * kc, kc)
    s = np.empty(r * r * K * C, np.float32)
    for q in range(r * r):                     # s[i, j] = (G^T t)[i, j]
        i, j = _U(q) // rr, _U(q) % rr
        _combine(g_t, i, t, j * kc, rr * kc, s, (i * rr + j) * kc, kc)
    wf = dw.reshape(-1)
    per_filter = rr * rr
    for f in range(kc):
        for e in range(per_filter):
            wf[f * per_filter + e] += s[e * kc + f]


class Workspace:
    """Transforms and buffers of F(m, r) for one input shape, reused across calls; with
    ``group`` > 1, the filters are (K, C / group, r, r) and each group's channels multiply
    only their own (row blocks of V, U and M)."""

    def __init__(self, m, r, num, channels, num_output, out_h, out_w, group=1):
        self.m, self.r = m, r
        self.at, self.g, self.bt = transforms(m, r)
        self.plans = {name: sparse_plan(c) for name, c in
                      (("at", self.at), ("bt", self.bt), ("at_t", self.at.T), ("g", self.g),
                       ("g_t", self.g.T))}
        self.at_pairs = output_pairs(self.at)
        self.tiles_h, self.tiles_w = tiles(out_h, out_w, m)
        per_image = self.tiles_h * self.tiles_w
        a = m + r - 1
        a2 = a * a
        side_h, side_w = (self.tiles_h - 1) * m + a, (self.tiles_w - 1) * m + a
        per_image_scratch = max(side_h * (side_w + a * self.tiles_w), (m + a) * m * per_image)
        self.chunk = max(1, min(num, SCRATCH_FLOATS // per_image_scratch))
        # Too few images per chunk for long (tile, image) runs: the input transform runs
        # over (tile, channel) in bands of tile rows instead, V keeps the channels
        # innermost, and M one-image chunks.
        self.band = 0
        if self.chunk < MIN_RUN_IMAGES and channels >= MIN_RUN_IMAGES:
            self.chunk = 1
            self.band = band_rows(self.tiles_h, num, channels, m, a, side_w)
        self.count = num * per_image
        self.channels = channels
        self.u = np.empty((a2, num_output, channels // group), np.float32)
        self.v_rows = np.empty((a2, channels * self.count + ROW_PAD), np.float32)
        self.m_rows = np.empty((a2, num_output * self.count + ROW_PAD), np.float32)
        self.m_ = self.m_rows[:, :num_output * self.count].reshape(a2, num_output, self.count)
        self.du = None          # the weight gradient's (A*A, K, C / group), at first use
        self.blocks = group_blocks(num_output, channels, group)

    @property
    def v(self):
        """V as the GEMM's (A*A, C, T) operand (a transposed view in bands mode)."""
        a2, ct = self.v_rows.shape[0], self.channels * self.count
        if self.band:
            return self.v_rows[:, :ct].reshape(a2, self.count, self.channels).transpose(0, 2, 1)
        return self.v_rows[:, :ct].reshape(a2, self.channels, self.count)


def band_rows(tiles_h, num, channels, m, a, side_w):
    """Tile rows per input-transform task in bands mode: as many as keep the task's scratch
    within SCRATCH_FLOATS, while leaving BAND_TASKS tasks or more where the image has
    the tile rows for them."""
    per_row = channels * (side_w + m + a * (side_w // m + 1))   # scratch of a padded row
    band = max(1, min(tiles_h, (SCRATCH_FLOATS // per_row - a) // m + 1))
    while band > 1 and num * -(-tiles_h // band) < BAND_TASKS:
        band -= 1
    return band


def group_blocks(num_output, channels, group):
    """Each group's (output channels, input channels) as slices: the row blocks of U and M,
    and of V, that multiply each other."""
    ko, ci = num_output // group, channels // group
    return [(slice(g * ko, (g + 1) * ko), slice(g * ci, (g + 1) * ci)) for g in range(group)]


def convolve(x, w, bias, y, pad_h, pad_w, work, filters_ready=False, relu_slope=None):
    """y = conv(x, w) + bias, stride 1, via F(m, r) as ``work`` holds it.

    x: (N, C, H, W); w: (K, C / group, r, r); y: (N, K, OH, OW); bias: (K,) or empty.
    ``filters_ready``: ``work.u`` already holds the transformed ``w``; ``relu_slope``:
    not None fuses a (leaky) ReLU of that slope into the output transform.
    """
    if not filters_ready:
        transform_filters(w, work.plans["g"], work.plans["g_t"], work.u)
    transform_bottom(x, pad_h, pad_w, work)
    for k, c in work.blocks:
        np.matmul(work.u[:, k], work.v[:, c], out=work.m_[:, k])
    transform_output(work.m_rows, y, work.plans["at"], work.at_pairs, work.m + work.r - 1, bias,
                     work.tiles_h, work.tiles_w, work.chunk, relu_slope is not None,
                     float(relu_slope or 0.0))


def transform_bottom(x, pad_h, pad_w, work):
    """work.v = the input transform of x (what ``weight_gradient`` multiplies by)."""
    if work.band:
        transform_input_bands(x, work.v_rows, work.plans["bt"], work.m, pad_h, pad_w,
                              work.tiles_h, work.tiles_w, work.band)
    else:
        transform_input(x, work.v_rows, work.plans["bt"], work.m, pad_h, pad_w,
                        work.tiles_h, work.tiles_w, work.chunk)


def weight_gradient(dy, work, dw, bias_diff):
    """dw += dL/dw and bias_diff += dL/db (when it has entries) for the top gradient dy of
    the product whose input transform ``work.v`` holds: dU[e] = dM[e] @ V[e]^T (per group),
    with dM the output transform's adjoint of dy (in M's buffer), then dw += G^T dU G."""
    n_chunks = -(-dy.shape[0] // work.chunk)
    sums = np.zeros((dy.shape[1], n_chunks if bias_diff.size else 0), np.float64)
    transform_top_grad(dy, work.m_rows, work.plans["at_t"], work.m, work.tiles_h, work.tiles_w,
                       work.chunk, sums)
    if work.du is None:
        work.du = np.empty((work.m_.shape[0], dw.shape[0], dw.shape[1]), np.float32)
    for k, c in work.blocks:
        np.matmul(work.m_[:, k], work.v[:, c].transpose(0, 2, 1), out=work.du[:, k])
    transform_filters_grad(work.du, work.plans["g"], work.plans["g_t"], dw)
    if bias_diff.size:
        bias_diff += sums.sum(axis=1).astype(np.float32)


def flip_filters(w, group=1):
    """The filters of a (grouped) convolution's data gradient: per group, w[k, c] rotated by
    180 degrees at [c, k]; w: (K, C / group, r, r) -> (C, K / group, r, r)."""
    K, cg, r1, r2 = w.shape
    per_group = w.reshape(group, K // group, cg, r1, r2)[..., ::-1, ::-1]
    return np.ascontiguousarray(per_group.transpose(0, 2, 1, 3, 4)).reshape(
        group * cg, K // group, r1, r2)
