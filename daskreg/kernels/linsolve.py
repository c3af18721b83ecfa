"""Small dense linear solves inside compiled fits: elimination, pseudo-inverse fallback.

Written as element loops (no ``np.linalg`` inside numba): ``np.linalg.pinv`` alone cost
about 1.5 s of compilation on a new install, for a fallback used only on degenerate
windows.

References
----------
G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., Johns Hopkins
University Press (2013), sections 3.4 (partial pivoting) and 8.5 (Jacobi methods).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["solve", "pseudo_solve"]

# Jacobi sweeps allowed for a 7 x 7 system; they converge quadratically, in about 6.
_JACOBI_SWEEPS = 50


@numba.njit(cache=True, nogil=True)
def solve(lhs, rhs):  # pragma: no cover - compiled
    """``lhs^-1 rhs`` by Gaussian elimination with partial pivoting.

    The pseudo-inverse where ``lhs`` is singular (a degenerate, e.g. flat, window).
    """
    n = len(rhs)
    m = lhs.copy()
    x = rhs.copy()
    for col in range(n):
        pivot = col
        for row in range(col + 1, n):
            if abs(m[row, col]) > abs(m[pivot, col]):
                pivot = row
        if m[pivot, col] == 0.0 or not np.isfinite(m[pivot, col]):
            return pseudo_solve(lhs, rhs)
        if pivot != col:
            for k in range(n):
                m[col, k], m[pivot, k] = m[pivot, k], m[col, k]
            x[col], x[pivot] = x[pivot], x[col]
        for row in range(col + 1, n):
            factor = m[row, col] / m[col, col]
            for k in range(col, n):
                m[row, k] -= factor * m[col, k]
            x[row] -= factor * x[col]
    for col in range(n - 1, -1, -1):
        total = x[col]
        for k in range(col + 1, n):
            total -= m[col, k] * x[k]
        x[col] = total / m[col, col]
    return x


@numba.njit(cache=True, nogil=True)
def pseudo_solve(lhs, rhs):  # pragma: no cover - compiled
    """``pinv(lhs) @ rhs`` for a symmetric ``lhs`` (the minimum-norm least-squares step).

    Cyclic Jacobi rotations diagonalise ``lhs = V diag(w) V^T``; eigenvalues below
    ``1e-15 max |w|`` (numpy's ``pinv`` cut-off) count as zero. Written out rather than
    ``np.linalg.pinv``, whose LAPACK bindings took 1.5 s of a new user's compile for a
    7 x 7 system seen only on degenerate windows. A non-finite ``lhs`` gives a NaN step,
    which Levenberg-Marquardt rejects.
    """
    n = len(rhs)
    a = np.empty((n, n))
    v = np.zeros((n, n))
    for i in range(n):
        v[i, i] = 1.0
        for j in range(n):
            a[i, j] = 0.5 * (lhs[i, j] + lhs[j, i])
    for _ in range(_JACOBI_SWEEPS):
        off = 0.0
        diagonal = 0.0
        for i in range(n):
            diagonal += a[i, i] * a[i, i]
            for j in range(i + 1, n):
                off += a[i, j] * a[i, j]
        if not off > 1e-32 * diagonal:
            break
        for p in range(n):
            for q in range(p + 1, n):
                if a[p, q] == 0.0:
                    continue
                # The rotation that zeroes a[p, q] (Numerical Recipes, section 11.1).
                theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
                t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):
                    akp, akq = a[k, p], a[k, q]
                    a[k, p] = c * akp - s * akq
                    a[k, q] = s * akp + c * akq
                for k in range(n):
                    apk, aqk = a[p, k], a[q, k]
                    a[p, k] = c * apk - s * aqk
                    a[q, k] = s * apk + c * aqk
                for k in range(n):
                    vkp, vkq = v[k, p], v[k, q]
                    v[k, p] = c * vkp - s * vkq
                    v[k, q] = s * vkp + c * vkq
    largest = 0.0
    for k in range(n):
        largest = max(largest, abs(a[k, k]))
    x = np.zeros(n)
    for k in range(n):
        if not abs(a[k, k]) > 1e-15 * largest:
            continue
        along = 0.0
        for i in range(n):
            along += v[i, k] * rhs[i]
        along /= a[k, k]
        for i in range(n):
            x[i] += along * v[i, k]
    return x
