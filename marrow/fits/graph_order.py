"""Make PyTensor build the same graph for the same model in every process.

PyTensor 2.38's `broadcast_shape_iter` (shape inference for elementwise operations between arrays of
unknown length) keeps the candidate lengths in a `set` of variables, which iterates in memory-address
order. The run-time shape checks it adds, and so the compiled graph and its numba cache key, differed
from process to process: the recovery model's graph came in at least 4 variants in 5 processes, and
PyTensor's disk cache of compiled numba functions missed at random (5-6 s of compiling each time).

`apply()` runs that function with an insertion-ordered set, the order in which the arrays are given.
Only which length is checked against which changes; no value does (the draws are identical, tested).
"""

from __future__ import annotations

import functools
from typing import Any

_applied = False


class _InsertionOrderedSet(dict):
    """The part of `set` that `broadcast_shape_iter` uses, iterating in insertion order."""

    def add(self, item: Any) -> None:
        self[item] = None


def apply() -> None:
    """Patch PyTensor's `broadcast_shape_iter` once per process (idempotent)."""
    global _applied
    if _applied:
        return
    from pytensor.tensor import extra_ops

    original = extra_ops.broadcast_shape_iter

    @functools.wraps(original)
    def broadcast_shape_iter(*args, **kwargs):
        extra_ops.set = _InsertionOrderedSet  # type: ignore[attr-defined]  # the module's name `set`, this call only
        try:
            return original(*args, **kwargs)
        finally:
            del extra_ops.set  # type: ignore[attr-defined]

    extra_ops.broadcast_shape_iter = broadcast_shape_iter
    _applied = True
