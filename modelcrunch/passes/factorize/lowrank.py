"""Shared math and graph plumbing for the factorizations.

Every matrix-shaped decomposition writes the layer's weight as a matrix ``M`` (p×q) whose rows are
indexed by what the layer *reads* (input features, or conv patch entries) and approximates it by
``A·B`` with ``A`` (p×r) and ``B`` (r×q).

* Plain truncated SVD: ``M = U Σ Vᵀ``; ``A = U_r Σ_r^½``, ``B = Σ_r^½ V_rᵀ`` (Eckart–Young optimal in
  Frobenius norm; relative weight error ``sqrt(Σ_{i≥r} σ_i² / Σ σ_i²)``).
* Activation-whitened SVD (data-aware): with the input second moment ``G = Σ xᵀx`` (summed over
  calibration rows), ``‖X(M − M̂)‖_F² = ‖S(M − M̂)‖_F²`` for ``S = Lᵀ`` with the Cholesky factor ``G = L Lᵀ``.
  The best rank-r ``M̂`` in *output* error is therefore ``S⁻¹·trunc_r(S·M)``:
  ``S M = U Σ Vᵀ``, ``A = S⁻¹ U_r Σ_r^½``, ``B = Σ_r^½ V_rᵀ``. ``G`` is damped by
  ``δ = 1e-3·trace(G)/p`` so ``S⁻¹`` stays bounded for rank-deficient activations. At full rank
  ``A·B = M`` exactly. This is also the least-squares refit: no other rank-r factors give a lower
  layer output error on the calibration data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelcrunch.errors import ModelcrunchError
from modelcrunch.passes._ir import register_array
from modelcrunch.passes.factorize.layers import Layer

DAMPING = 1e-3


@dataclass
class Svd:
    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray

    @classmethod
    def of(cls, matrix: np.ndarray) -> Svd:
        if not np.isfinite(matrix).all():  # LAPACK would fail, and print to stdout first
            raise ModelcrunchError("a weight to factorize holds NaN or infinite values")
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        return cls(u, s, vt)


@dataclass
class Whitener:
    """``Sᵀ S = G`` from the Cholesky factor of a damped input second moment ``G = L Lᵀ`` (``S = Lᵀ``)."""

    sqrt: np.ndarray  # S = Lᵀ (upper triangular)
    lower: np.ndarray  # L

    @classmethod
    def of(cls, gram: np.ndarray) -> Whitener:
        if not np.isfinite(gram).all():
            raise ModelcrunchError("a layer's input statistics hold NaN or infinite values (overflow?)")
        gram = (gram + gram.T) / 2.0
        damping = DAMPING * max(float(np.trace(gram)) / len(gram), 1e-12)
        lower = np.linalg.cholesky(gram + damping * np.eye(len(gram)))
        return cls(lower.T, lower)

    def unwhiten(self, a: np.ndarray) -> np.ndarray:
        """``S⁻¹ a`` (solve with the triangular ``Lᵀ``)."""
        return np.linalg.solve(self.sqrt, a)


def output_error(matrix: np.ndarray, approx: np.ndarray, gram: np.ndarray) -> float:
    """Relative layer output error ``‖X(M − M̂)‖_F / ‖X M‖_F`` from ``G = XᵀX``."""
    diff = matrix - approx
    num = float(np.sum(diff * (gram @ diff)))
    den = float(np.sum(matrix * (gram @ matrix)))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0


def weight_error(original: np.ndarray, approx: np.ndarray) -> float:
    norm = float(np.linalg.norm(original))
    return float(np.linalg.norm(original - approx) / norm) if norm > 0 else 0.0


class MatrixDecomposition:
    """A layer approximated through one matrix ``M ≈ A·B``; subclasses map kernels and emit nodes."""

    method = "svd"
    supports_data = True

    def __init__(self, layer: Layer, gram: np.ndarray | None = None) -> None:
        self.layer = layer
        self.matrix = self.to_matrix(layer.matrix)
        self.gram = gram if self.supports_data else None
        self.plain = Svd.of(self.matrix)
        self.whitener = Whitener.of(self.gram) if self.gram is not None else None
        self.white = Svd.of(self.whitener.sqrt @ self.matrix) if self.whitener is not None else None

    # ---- shape of the problem ---------------------------------------------------------------
    def to_matrix(self, kernel: np.ndarray) -> np.ndarray:
        return kernel

    def from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return matrix

    @property
    def max_ranks(self) -> tuple[int, ...]:
        return (min(self.matrix.shape),)

    def energies(self, data_aware: bool) -> list[np.ndarray]:
        """Squared singular values per rank axis (whitened ones when data-aware)."""
        svd = self.white if data_aware and self.white is not None else self.plain
        return [svd.s**2]

    def cost(self, ranks: tuple[int, ...]) -> tuple[int, int]:
        """(parameters, MACs) of the factorized layer."""
        p, q = self.matrix.shape
        params = ranks[0] * (p + q)
        return params, params * self.layer.rows

    def loss(self, ranks: tuple[int, ...], data_aware: bool) -> float:
        e = self.energies(data_aware)[0]
        total = float(e.sum())
        return float(e[ranks[0] :].sum() / total) if total > 0 else 0.0

    # ---- factors ----------------------------------------------------------------------------
    def factors(self, ranks: tuple[int, ...], data_aware: bool) -> list[np.ndarray]:
        r = ranks[0]
        if data_aware and self.white is not None:
            svd, whitener = self.white, self.whitener
        else:
            svd, whitener = self.plain, None
        root = np.sqrt(svd.s[:r])
        a = svd.u[:, :r] * root
        if whitener is not None:
            a = whitener.unwhiten(a)
        b = root[:, None] * svd.vt[:r]
        return [a, b]

    def product(self, factors: list[np.ndarray]) -> np.ndarray:
        """The approximation of ``M`` the factors stand for."""
        return factors[0] @ factors[1]

    def emit(self, factors: list[np.ndarray], names: NameScope) -> list[ir.Node]:
        raise NotImplementedError


class NameScope:
    """Fresh value/node names, unique across the whole model (subgraphs see outer names)."""

    def __init__(self, model: ir.Model) -> None:
        self.used: set[str] = set()
        for graph in model.graphs():
            self.used.update(v.name for v in graph.inputs if v.name)
            self.used.update(graph.initializers)
            for node in graph:
                self.used.update(v.name for v in node.outputs if v.name)
                if node.name:
                    self.used.add(node.name)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


def add_initializer(graph: ir.Graph, name: str, array: np.ndarray, like: ir.Value) -> ir.Value:
    """Register ``array`` (cast to ``like``'s dtype) as an initializer of ``graph``."""
    return register_array(graph, name, array.astype(like.const_value.numpy().dtype))


def make_node(op: str, inputs: list[ir.Value | None], name: str, names: NameScope, **attrs) -> ir.Node:
    node = ir.Node(
        "",
        op,
        inputs,
        attributes=[ir.convenience.convert_attribute(k, v) for k, v in attrs.items()],
        name=names.fresh(name),
        num_outputs=1,
    )
    node.outputs[0].name = names.fresh(f"{name}_out")
    return node


def replace_layer(layer: Layer, new_nodes: list[ir.Node]) -> None:
    """Put ``new_nodes`` in place of the layer's node and drop the old weight if now unused."""
    node, graph = layer.node, layer.graph
    ir.convenience.replace_nodes_and_values(
        graph, node, [node], new_nodes, list(node.outputs), [new_nodes[-1].outputs[0]]
    )
    weight = layer.weight
    if not weight.uses() and weight.name in graph.initializers:
        graph.initializers.pop(weight.name)
