"""Intermediate feature matching: values that keep their name and shape in student and teacher.

A pruned or factorized student keeps the teacher's value names. Where a value produced by a Conv,
Gemm, MatMul, Add, Mul, Concat or activation also keeps its shape (block outputs of residual
stages, unpruned heads, factorized layers' outputs), the student's value can be pulled towards the
teacher's with the normalised MSE ``mean((s - t)^2) / var(t)``, added to the output losses times
``weight``. At most ``limit`` values are matched, spread evenly along the graph, so the cost stays a
few extra outputs of the teacher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from modelcrunch.runtime.session import make_session, run_checked

_OPS = frozenset({"Conv", "Gemm", "MatMul", "Add", "Mul", "Concat", "Relu", "Sigmoid", "Gelu", "Erf"})


def candidates(student: ir.Model, teacher: ir.Model) -> list[str]:
    """Names of float intermediate values both graphs produce with a feature-like op, in order."""
    outputs = {v.name for v in student.graph.outputs}
    teacher_values = {
        out.name for node in teacher.graph for out in node.outputs if node.op_type in _OPS and out.name
    }
    names = []
    for node in student.graph:
        if node.op_type not in _OPS:
            continue
        for out in node.outputs:
            if out.name in teacher_values and out.name not in outputs:
                names.append(out.name)
    return names


def with_outputs(model: ir.Model, names: list[str]) -> ir.Model:
    """A copy of ``model`` that also returns the values ``names``."""
    copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    values = {out.name: out for node in copy.graph for out in node.outputs}
    for name in names:
        value = values[name]
        if value.type is None:
            value.type = ir.TensorType(ir.DataType.FLOAT)
        copy.graph.outputs.append(value)
    return copy


def matched(
    student_values: Mapping[str, Any],
    teacher: ir.Model,
    feed: Mapping[str, np.ndarray],
    names: list[str],
    limit: int,
    threads: int | None,
) -> list[str]:
    """The ``names`` whose student values (torch tensors, from the translation on ``feed``) and
    teacher values are floats of one shape, thinned to ``limit``. Shape arithmetic (int64
    Mul/Add/Concat) keeps names and shapes too, but is no feature: it is left out before the teacher
    is asked for it (``with_outputs`` types what it does not know as float)."""
    names = [n for n in names if n in student_values and student_values[n].is_floating_point()]
    if not names:
        return []
    session = make_session(with_outputs(teacher, names), threads=threads)
    got = dict(
        zip([o.name for o in session.get_outputs()], run_checked(session, feed, name="teacher"), strict=True)
    )
    same = [
        n
        for n in names
        if tuple(student_values[n].shape) == got[n].shape and np.issubdtype(got[n].dtype, np.floating)
    ]
    if len(same) <= limit:
        return same
    picks = np.linspace(0, len(same) - 1, limit).round().astype(int)
    return [same[i] for i in sorted(set(picks.tolist()))]
