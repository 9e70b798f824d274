"""Low-rank factorization of MatMul/Gemm and Conv weights (``modelcrunch factorize``).

One module per rewrite: ``linear`` (MatMul/Gemm → two MatMuls), ``conv_channel`` (k×k C→r, 1×1
r→O), ``conv_spatial`` (k×1 then 1×k), ``conv_tucker`` (1×1, k×k, 1×1); ``lowrank`` holds the
shared SVD / whitening math, ``calibration`` the activation statistics, ``core`` the pass.
"""

from modelcrunch.passes.factorize.core import CONV_METHODS, FactorizeConfig, RankPolicy, factorize
from modelcrunch.passes.factorize.report import SCHEMA, FactorizeReport, LayerReport

__all__ = [
    "CONV_METHODS",
    "SCHEMA",
    "FactorizeConfig",
    "FactorizeReport",
    "LayerReport",
    "RankPolicy",
    "factorize",
]
