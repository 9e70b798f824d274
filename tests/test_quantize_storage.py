"""Storage-only int8 (``storage.py``): the bytes beside the int8 values (scales, biases, names)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from models import run_ort
from onnx import TensorProto, helper, numpy_helper

from modelcrunch.passes.quantize.storage import quantize_array, storage_quantize

RNG = np.random.default_rng(7)
FEED = {"x": RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)}


def conv_proto(*, weight_scale: float = 0.1, bias: np.ndarray | None = None, extra: bool = False):
    """x[1,8,10,10] → Conv 64x8x3x3 (+ bias) → y; ``extra`` adds values named like the storage
    form's short names (``q0``, ``s0``, ``dq0``...) to check they are not reused."""
    inits = {
        "layer1.conv.weight": (RNG.standard_normal((64, 8, 3, 3)) * weight_scale).astype(np.float32),
        "layer1.conv.bias": (RNG.standard_normal(64) if bias is None else bias).astype(np.float32),
    }
    nodes = [helper.make_node("Conv", ["x", *inits], ["q0"], pads=[1, 1, 1, 1], name="dq0")]
    if extra:
        nodes.append(helper.make_node("Relu", ["q0"], ["s0"], name="dqc0"))
        nodes.append(helper.make_node("Relu", ["s0"], ["y"], name="c0"))
    else:
        nodes.append(helper.make_node("Relu", ["q0"], ["y"], name="relu"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 10, 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def stored(proto: onnx.ModelProto, **kwargs) -> tuple[onnx.ModelProto, list[str]]:
    model = ir.serde.deserialize_model(proto)
    names = storage_quantize(model, **kwargs)
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return out, names


def dtypes(proto: onnx.ModelProto) -> dict[str, int]:
    return {t.name: t.data_type for t in proto.graph.initializer}


def test_scales_and_bias_are_float16_and_the_layer_reads_the_same_names():
    proto = conv_proto()
    out, names = stored(proto)
    assert names == ["layer1.conv.weight"]
    conv = next(n for n in out.graph.node if n.op_type == "Conv")
    assert list(conv.input) == ["x", "layer1.conv.weight", "layer1.conv.bias"]  # now computed values
    kinds = sorted(dtypes(out).values())
    assert kinds == sorted([TensorProto.INT8, TensorProto.FLOAT16, TensorProto.FLOAT16])
    expected, got = run_ort(proto, FEED)[0], run_ort(out, FEED)[0]
    cos = float(np.dot(expected.ravel(), got.ravel()) / np.linalg.norm(expected) / np.linalg.norm(got))
    assert cos > 0.9999
    assert len(out.SerializeToString()) < 0.30 * len(proto.SerializeToString())


def test_float16_scales_are_exact_and_keep_weights_in_range():
    weights = (RNG.standard_normal((64, 32)) * 0.05).astype(np.float32)
    q, scale = quantize_array(weights, 0)
    assert np.array_equal(scale.astype(np.float16).astype(np.float32), scale)  # exactly float16
    assert np.all(scale >= np.abs(weights).max(axis=1) / 127)  # rounded up: nothing clips
    assert np.abs(q).max() <= 127
    error = np.abs(q * scale[:, None] - weights).max(axis=1)
    assert np.all(error <= scale / 2 + 1e-9)


def test_new_names_do_not_collide_with_the_models():
    out, _ = stored(conv_proto(extra=True))  # the model already uses q0, s0, c0, dq0, dqc0
    produced = [o for n in out.graph.node for o in n.output] + [t.name for t in out.graph.initializer]
    assert len(produced) == len(set(produced))
    node_names = [n.name for n in out.graph.node]
    assert len(node_names) == len(set(node_names))


@pytest.mark.parametrize(
    ("weight_scale", "bias", "half_scale", "half_bias"),
    [
        (1e-4, None, False, True),  # scales below float16's normal range stay float32
        (0.1, np.full(64, 1e5), True, False),  # a bias beyond float16's range stays float32
    ],
)
def test_float16_only_where_it_is_safe(weight_scale, bias, half_scale, half_bias):
    proto = conv_proto(weight_scale=weight_scale, bias=bias)
    out, _ = stored(proto)
    kinds = list(dtypes(out).values())
    assert kinds.count(TensorProto.FLOAT16) == half_scale + half_bias
    expected, got = run_ort(proto, FEED)[0], run_ort(out, FEED)[0]
    assert np.abs(expected - got).max() <= 1e-2 * np.abs(expected).max()


def test_weight_slots_only_leaves_biases_alone():
    out, _ = stored(conv_proto(), weight_slots_only=True)
    assert dtypes(out)["layer1.conv.bias"] == TensorProto.FLOAT


def test_excluded_layer_keeps_weight_and_bias_float32():
    out, names = stored(conv_proto(), exclude=frozenset({"dq0"}))
    assert names == []
    assert set(dtypes(out).values()) == {TensorProto.FLOAT}


def _if_with_copies_proto(*, clash: bool = False) -> onnx.ModelProto:
    """c (bool) → If: both branches hold the same [32, 64] weight (as ORT's constant folding writes
    it); y = x @ W + 1. ``clash``: each branch's product is named like the other branch's weight
    (legal between siblings, not under a main-graph name)."""
    weight = RNG.standard_normal((32, 64)).astype(np.float32)

    def branch(tag: str, other: str) -> onnx.GraphProto:
        product = f"folded_{other}" if clash else f"p_{tag}"
        nodes = [
            helper.make_node("MatMul", ["x", f"folded_{tag}"], [product]),
            helper.make_node("Add", [product, f"one_{tag}"], [f"y_{tag}"]),
        ]
        inits = [
            numpy_helper.from_array(weight, f"folded_{tag}"),
            numpy_helper.from_array(np.ones(1, np.float32), f"one_{tag}"),
        ]
        return helper.make_graph(
            nodes, tag, [], [helper.make_tensor_value_info(f"y_{tag}", TensorProto.FLOAT, [2, 64])], inits
        )

    branches = {"then_branch": branch("then", "else"), "else_branch": branch("else", "then")}
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], **branches)],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_subgraph_copies_of_a_weight_become_one_outer_scope_initializer(tmp_path):
    from modelcrunch.passes._ir import share_subgraph_copies

    proto = _if_with_copies_proto()
    model = ir.serde.deserialize_model(proto)
    assert share_subgraph_copies(model) == (1, 32 * 64 * 4)
    assert list(model.graph.initializers) in (["folded_then"], ["folded_else"])
    for node in model.graph:
        for attr in ("then_branch", "else_branch"):
            sub = node.attributes[attr].as_graph()
            assert "folded_then" not in sub.initializers and "folded_else" not in sub.initializers
    shared = ir.serde.serialize_model(model)
    onnx.checker.check_model(shared, full_check=True)
    x = RNG.standard_normal((2, 32)).astype(np.float32)
    for flag in (True, False):
        feed = {"c": np.array(flag), "x": x}
        np.testing.assert_array_equal(run_ort(shared, feed)[0], run_ort(proto, feed)[0])
    assert share_subgraph_copies(model) == (0, 0)
    clashing = ir.serde.deserialize_model(_if_with_copies_proto(clash=True))
    assert share_subgraph_copies(clashing)[0] == 1
    assert list(clashing.graph.initializers) in (["folded_then1"], ["folded_else1"])  # a sibling had its name
    onnx.checker.check_model(ir.serde.serialize_model(clashing), full_check=True)
