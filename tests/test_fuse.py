"""passes/fuse.py: Conv affine folding and HardSwish fusion are exact, keep the signature, pass the
checker, run in ONNX Runtime, change nothing when run again, and leave alone what they must not touch."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import typer
from models import assert_close_on_ort, run_ort, save_proto
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from modelcrunch.cli.quantize import quantize_cmd
from modelcrunch.passes.fuse import fuse_for_int8
from modelcrunch.passes.quantize import Mode, QuantizeOptions, quantize_model

RNG = np.random.default_rng(0)
#: Folding reorders float products (W·k instead of (W·x)·k): a few ulps of fp32.
TOL = {"rtol": 1e-4, "atol": 1e-5}
X = {"x": RNG.standard_normal((2, 4, 8, 8)).astype(np.float32) * 3}


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _model(nodes, inits, *, opset: int = 13, outputs=("y",), channels: int = 8) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", channels, 8, 8]) for o in outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _hard_swish(x: str, out: str, *, div_first: bool = False, sixth_by_mul: bool = False) -> list:
    """Paddle's and PyTorch's exported spellings of ``x · clip(x + 3, 0, 6) / 6``."""
    sixth = helper.make_node("Mul", [f"{out}_p", "sixth"], [f"{out}_s"]) if sixth_by_mul else None
    sixth = sixth or helper.make_node("Div", [f"{out}_p", "six"], [f"{out}_s"])
    nodes = [
        helper.make_node("Add", [x, "three"], [f"{out}_a"]),
        helper.make_node("Clip", [f"{out}_a", "zero", "six"], [f"{out}_c"]),
    ]
    if div_first:
        sixth.input[0], sixth.output[0] = f"{out}_c", f"{out}_p"
        return [*nodes, sixth, helper.make_node("Mul", [x, f"{out}_p"], [out])]
    return [
        *nodes,
        helper.make_node("Mul", [x, f"{out}_c"], [f"{out}_p"]),
        helper.make_node(sixth.op_type, [f"{out}_p", sixth.input[1]], [out]),
    ]


CONSTANTS = [
    _init("three", 3.0),
    _init("zero", 0.0),
    _init("six", 6.0),
    _init("sixth", 1 / 6),
    _init("k1", [0.9]),
    _init("d1", [0.5]),
    _init("k2", [0.4]),
    _init("d2", [-0.3]),
    _init("kc", RNG.random((1, 8, 1, 1)) + 0.5),
]


def lab_proto(*, opset: int = 13, **hard_swish) -> onnx.ModelProto:
    """PP-LCNetV3's block: Conv → ·k+d → HardSwish → ·k+d → 1x1 Conv → ·per-channel scale."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["k1", "c1"], ["m1"]),  # the constant first, as paddle2onnx writes it
        helper.make_node("Add", ["m1", "d1"], ["a1"]),
        *_hard_swish("a1", "h1", **hard_swish),
        helper.make_node("Mul", ["h1", "k2"], ["m2"]),
        helper.make_node("Add", ["m2", "d2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w2"], ["c2"]),
        helper.make_node("Mul", ["c2", "kc"], ["y"]),
    ]
    inits = [_init("w1", RNG.standard_normal((8, 4, 3, 3)) * 0.3), _init("b1", RNG.standard_normal(8))]
    inits.append(_init("w2", RNG.standard_normal((8, 8, 1, 1)) * 0.3))
    return _model(nodes, [*inits, *CONSTANTS], opset=opset)


def fused(proto: onnx.ModelProto):
    model = ir.serde.deserialize_model(proto)
    result = fuse_for_int8(model)
    out = ir.to_proto(model)
    onnx.checker.check_model(out, full_check=True)
    return out, result


def ops(proto: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in proto.graph.node)


@pytest.mark.parametrize("spelling", [{}, {"div_first": True}, {"sixth_by_mul": True}])
def test_lab_block_folds_to_two_convs_and_hard_sigmoid(spelling: dict) -> None:
    proto = lab_proto(**spelling)
    out, result = fused(proto)
    assert (result.hard_swish, result.output_affine, result.input_affine) == (1, 3, 2)
    assert ops(out) == Counter({"Conv": 2, "HardSigmoid": 1, "Mul": 1})  # x · HardSigmoid(x) below opset 14
    assert [o.name for o in out.graph.output] == ["y"] and out.graph.input == proto.graph.input
    assert_close_on_ort(proto, out, X, **TOL)
    assert {i.name for i in out.graph.initializer}.isdisjoint({"k1", "d1", "k2", "d2", "kc", "w1", "b1"})


def test_hard_swish_op_from_opset_14_and_idempotent() -> None:
    proto = lab_proto(opset=14)
    out, _ = fused(proto)
    assert ops(out)["HardSwish"] == 1 and "HardSigmoid" not in ops(out)
    assert_close_on_ort(proto, out, X, **TOL)
    again, result = fused(out)
    assert not result.changed and again == out


def test_padded_conv_keeps_the_affine_before_it() -> None:
    """Padding adds zeros after the shift: ``Conv(pad(x·k + d)) != Conv'(pad(x))`` at the borders."""
    nodes = [
        helper.make_node("Mul", ["x", "k1"], ["m"]),
        helper.make_node("Add", ["m", "d1"], ["a"]),
        helper.make_node("Conv", ["a", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    proto = _model(nodes, [_init("w", RNG.standard_normal((8, 4, 3, 3))), *CONSTANTS])
    out, result = fused(proto)
    assert not result.changed and ops(out) == ops(proto)


def test_grouped_conv_takes_scalar_but_not_per_channel_input_affine() -> None:
    weight = _init("w", RNG.standard_normal((8, 1, 1, 1)))

    def proto(scale: str) -> onnx.ModelProto:
        nodes = [
            helper.make_node("Mul", ["x", scale], ["m"]),
            helper.make_node("Conv", ["m", "w"], ["y"], group=4),
        ]
        k4 = _init("k4", RNG.random((1, 4, 1, 1)) + 0.5)
        return _model(nodes, [weight, k4, *CONSTANTS])

    scalar, result = fused(proto("k1"))
    assert result.input_affine == 1 and ops(scalar) == Counter({"Conv": 1})
    assert_close_on_ort(proto("k1"), scalar, X, **TOL)
    _, result = fused(proto("k4"))
    assert not result.changed


def test_left_alone_shared_values_reversed_operands_and_other_clips() -> None:
    """A value read twice, ``d - x`` and a Clip range other than (0, 6) stop the rewrites."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mul", ["c", "k1"], ["m"]),  # c is also read by the Add below
        helper.make_node("Add", ["m", "c"], ["c2"]),
        helper.make_node("Sub", ["d1", "c2"], ["s"]),  # d - x is not x - d
        helper.make_node("Add", ["s", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "three"], ["cl"]),  # clip(0, 3): not HardSwish
        helper.make_node("Mul", ["s", "cl"], ["p"]),
        helper.make_node("Div", ["p", "six"], ["y"]),
    ]
    proto = _model(nodes, [_init("w", RNG.standard_normal((8, 4, 1, 1))), *CONSTANTS])
    out, result = fused(proto)
    assert not result.changed and ops(out) == ops(proto)


def test_shared_weight_is_copied_not_changed() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mul", ["c", "k1"], ["m"]),
        helper.make_node("Conv", ["x", "w"], ["c2"]),
        helper.make_node("Add", ["m", "c2"], ["y"]),
    ]
    proto = _model(nodes, [_init("w", RNG.standard_normal((8, 4, 1, 1))), *CONSTANTS])
    out, result = fused(proto)
    assert result.output_affine == 1 and ops(out) == Counter({"Conv": 2, "Add": 1})
    assert "w" in {i.name for i in out.graph.initializer}  # still read by the second Conv, unchanged
    assert_close_on_ort(proto, out, X, **TOL)


@pytest.mark.parametrize("fuse", [True, False])
def test_quantize_fuses_before_quantizing_unless_told_not_to(tmp_path: Path, fuse: bool) -> None:
    """Static int8 of a LAB block: the fused graph has no QLinearMul/Add left for the affines."""
    proto = lab_proto()
    src = save_proto(proto, tmp_path / "lab.onnx")
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=RNG.standard_normal((8, 4, 8, 8)).astype(np.float32) * 3)
    out = tmp_path / "q.onnx"
    options = QuantizeOptions(mode=Mode.STATIC, fuse=fuse, sensitivity=False, bench=False)
    report = quantize_model(src, out, options, calibration=calib)
    notes = [n for n in report.preprocessing if n.startswith("fused")]
    quantized = ops(onnx.load(str(out)))
    if fuse:
        assert len(notes) == 1 and notes[0].endswith("Mul/Add folded into Convs; 1 HardSwish fused")
        assert quantized["Add"] == 0 and quantized["Mul"] <= 1  # only x · HardSigmoid(x)
    else:
        assert not notes and quantized["Add"] + quantized["Mul"] >= 6
    (ref,), (got,) = run_ort(proto, X), run_ort(out, X)
    assert np.dot(ref.ravel(), got.ravel()) / np.linalg.norm(ref) / np.linalg.norm(got) > 0.99


@pytest.mark.parametrize("flags", [[], ["--no-fuse", "--no-gptq"]])
def test_cli_flags_reach_the_pipeline_json(tmp_path: Path, flags: list[str]) -> None:
    """``--no-fuse`` / ``--no-gptq`` switch the rewrites off; ``--json`` says what was done."""
    src = save_proto(lab_proto(), tmp_path / "lab.onnx")
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=RNG.standard_normal((8, 4, 8, 8)).astype(np.float32) * 3)
    app = typer.Typer(add_completion=False)
    app.command()(quantize_cmd)
    args = [
        src,
        "-o",
        tmp_path / "q.onnx",
        "--mode",
        "storage",
        "--calibration",
        calib,
        "--no-bench",
        "--json",
    ]
    result = CliRunner().invoke(app, [str(a) for a in [*args, *flags]])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["preprocessing"]
    fused = any(n.startswith("fused before quantizing") for n in notes)
    gptq = any(n.startswith("GPTQ rounding") for n in notes)
    assert (fused, gptq) == ((True, True) if not flags else (False, False))


def attention_proto(*, opset: int, mask_value: float) -> onnx.ModelProto:
    """``softmax(scores + (1 - mask) · mask_value)`` as Hugging Face exports BERT's attention."""
    nodes = [
        helper.make_node("Unsqueeze", ["mask", "axes12"], ["m4"]),
        helper.make_node("Cast", ["m4"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["inv"]),
        helper.make_node("Mul", ["inv", "big"], ["ext"]),
        helper.make_node("Add", ["scores", "ext"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        helper.make_node("Softmax", ["scores"], ["plain"], axis=-1),  # no mask: left alone
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 2, 6, 6]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["n", 6]),
        ],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", 2, 6, 6]) for o in ("probs", "plain")],
        initializer=[
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
            _init("one", 1.0),
            _init("big", mask_value),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(
    ("opset", "mask_value"), [(13, float(np.finfo(np.float32).min)), (14, -1e4), (18, -1e9)]
)
def test_masked_softmax_clamped_exactly(opset: int, mask_value: float) -> None:
    proto = attention_proto(opset=opset, mask_value=mask_value)
    out, result = fused(proto)
    assert result.softmax == 1 and ops(out)["Max"] == 1 and ops(out)["ReduceMax"] == 1
    mask = np.ones((3, 6), np.int64)
    mask[0, 4:] = 0  # padding
    mask[1, :] = 0  # a row masked everywhere: unchanged too
    feeds = {"scores": RNG.standard_normal((3, 2, 6, 6)).astype(np.float32) * 10, "mask": mask}
    feeds["scores"][2, 0, 0, 0] = -200.0  # a real score far below its row's max: clamped, weight ~0
    before, after = run_ort(proto, feeds), run_ort(out, feeds)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-30)
    if mask_value < -1e30:  # scores vanish beside the mask: the fully masked row is uniform
        assert np.allclose(after[0][1], 1 / 6)
    assert fused(out)[1].softmax == 0  # idempotent: the Softmax now reads the clamp, not the Add


def test_masked_softmax_clamp_names_are_fresh() -> None:
    """The clamp's nodes and values take names nothing in the model uses yet."""
    proto = attention_proto(opset=18, mask_value=-1e4)
    proto.graph.node[0].name = "softmax_peak"  # the names the clamp would pick first
    cast = proto.graph.node[1]
    cast.output[0] = "softmax_floor_out"
    proto.graph.node[2].input[1] = "softmax_floor_out"
    proto.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "softmax_axes-1"))
    out, result = fused(proto)
    assert result.softmax == 1
    nodes = [n.name for n in out.graph.node if n.name]
    values = [o for n in out.graph.node for o in n.output] + [t.name for t in out.graph.initializer]
    assert len(nodes) == len(set(nodes)) and len(values) == len(set(values))
    scores = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    feeds = {"scores": scores, "mask": np.ones((2, 6), np.int64)}
    for a, b in zip(run_ort(proto, feeds), run_ort(out, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
