"""MatMul / Gemm with a constant weight → two MatMuls through a rank-r bottleneck.

Rewrites ``Y = X·W`` (MatMul; ``X`` of any rank ≥ 2, e.g. transformer activations [b, s, K]) and
``Y = α·op(X)·op(W) + β·C`` (Gemm) with ``M = α·op(W)`` (K×N) ≈ ``A·B``, ``A`` (K×r), ``B`` (r×N):

* MatMul: ``MatMul(MatMul(X, A), B)``.
* Gemm:   ``[Transpose(X) if transA] → MatMul(·, A) → Gemm(·, B, C, beta=β)`` (or MatMul when there is
  no C). α is folded into ``A·B``; transB into the orientation of ``M``.

Parameters ``K·N → r·(K+N)`` and MACs per row likewise, so a rank only pays off when
``r < K·N/(K+N)``. Limits: the weight must be a 2-D constant right-hand operand used by this node only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelcrunch.analysis.channels import attr_value
from modelcrunch.passes.factorize.lowrank import MatrixDecomposition, NameScope, add_initializer, make_node


class LinearSvd(MatrixDecomposition):
    method = "svd"

    def emit(self, factors: list[np.ndarray], names: NameScope) -> list[ir.Node]:
        layer, node = self.layer, self.layer.node
        a, b = factors
        base = node.name or layer.weight.name or "linear"
        a_val = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_A"), a, layer.weight)
        b_val = add_initializer(layer.graph, names.fresh(f"{layer.weight.name}_lr_B"), b, layer.weight)
        x = node.inputs[0]
        nodes: list[ir.Node] = []
        if node.op_type == "Gemm" and attr_value(node, "transA", 0):
            nodes.append(make_node("Transpose", [x], f"{base}_lr_transpose", names, perm=[1, 0]))
            x = nodes[-1].outputs[0]
        nodes.append(make_node("MatMul", [x, a_val], f"{base}_lr_in", names))
        h = nodes[-1].outputs[0]
        bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
        if bias is not None:
            beta = float(attr_value(node, "beta", 1.0))
            nodes.append(make_node("Gemm", [h, b_val, bias], f"{base}_lr_out", names, beta=beta))
        else:
            nodes.append(make_node("MatMul", [h, b_val], f"{base}_lr_out", names))
        return nodes
