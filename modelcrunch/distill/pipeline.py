"""``distill_file``: load the student and the teacher, train, write only the student's weights.

The written model is the student's graph, unchanged, with its trained initializers; it goes
through :func:`modelcrunch.io.save_model` (checker, ONNX Runtime, atomic) like every other write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import onnx_ir as ir

from modelcrunch.data import Dataset
from modelcrunch.distill import require_torch
from modelcrunch.io import load_model, refuse_input, save_model


def distill_file(
    student: str | os.PathLike,
    teacher: str | os.PathLike | ir.Model,
    data: Dataset,
    output: str | os.PathLike,
    config=None,  # noqa: ANN001 - DistillConfig, imported with torch
    *,
    overwrite_input: bool = False,
    on_step: Callable | None = None,
    on_epoch: Callable | None = None,
):  # noqa: ANN201 - DistillReport
    """Distill ``student`` (a file) against ``teacher`` on ``data``; write the result to ``output``."""
    require_torch()
    from modelcrunch.distill.train import DistillConfig, DistillReport, distill_model

    config = config or DistillConfig()
    if not isinstance(teacher, ir.Model):
        refuse_input(Path(output), Path(teacher), "distilled student", hint=False)  # an input too
    student_model = load_model(student)
    teacher_model = teacher if isinstance(teacher, ir.Model) else load_model(teacher)
    trained, report = distill_model(
        student_model, teacher_model, data, config, on_step=on_step, on_epoch=on_epoch
    )
    feed = {n: data.samples[0][n] for n in (v.name for v in trained.graph.inputs)}
    saved = save_model(trained, output, source=student, overwrite_input=overwrite_input, run_feed=feed)
    paths = {
        "student": str(student),
        "teacher": str(teacher) if not isinstance(teacher, ir.Model) else "(in memory)",
        "output": str(Path(output)),
        "size_bytes": saved.size_bytes,
    }
    return DistillReport(**{**report.__dict__, "paths": paths})
