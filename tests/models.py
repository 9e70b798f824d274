"""Small models built in code, and the one reference-comparison helper every test uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def save_proto(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mlp_proto(*, constants: bool = False, opset: int = 17) -> onnx.ModelProto:
    """input[batch,16] → Gemm(16→32) → Relu → MatMul(32→8) + Add → output[batch,8].

    With ``constants=True`` the weights live in Constant nodes (as PaddleOCR's exporter does).
    """
    w1 = RNG.standard_normal((32, 16)).astype(np.float32)
    b1 = RNG.standard_normal(32).astype(np.float32)
    w2 = RNG.standard_normal((32, 8)).astype(np.float32)
    b2 = RNG.standard_normal(8).astype(np.float32)
    tensors = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["output"], name="fc2_bias"),
    ]
    inits = []
    if constants:
        nodes = [
            helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k), name=f"const_{k}")
            for k, v in tensors.items()
        ] + nodes
    else:
        inits = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")


def if_proto() -> onnx.ModelProto:
    """A model whose weights live inside the branches of an If (one branch holds a Constant)."""
    wt = RNG.standard_normal((4, 4)).astype(np.float32)
    we = RNG.standard_normal((4, 4)).astype(np.float32)
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["yt"])],
        "then",
        [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(wt, "wt")],
    )
    else_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["we"], value=numpy_helper.from_array(we, "we")),
            helper.make_node("MatMul", ["x", "we"], ["ye"]),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("ye", TensorProto.FLOAT, ["batch", 4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
        "ifmodel",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_ort(model: str | Path | onnx.ModelProto | ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    if isinstance(model, ir.Model):
        model = ir.to_proto(model)
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def assert_same_signature(a: str | Path, b: str | Path) -> None:
    """Inputs and outputs keep names, dtypes and shapes."""
    ma, mb = onnx.load(str(a), load_external_data=False), onnx.load(str(b), load_external_data=False)
    assert [
        (v.name, v.type) for v in ma.graph.input if v.name not in {i.name for i in ma.graph.initializer}
    ] == [(v.name, v.type) for v in mb.graph.input if v.name not in {i.name for i in mb.graph.initializer}]
    assert [(v.name, v.type) for v in ma.graph.output] == [(v.name, v.type) for v in mb.graph.output]


def assert_close_on_ort(
    original, candidate, feeds: dict[str, np.ndarray], *, rtol: float, atol: float
) -> None:
    """Both models run in ONNX Runtime on ``feeds`` and agree within the stated tolerances."""
    for ref, got in zip(run_ort(original, feeds), run_ort(candidate, feeds), strict=True):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
