"""The channel-group analysis: which groups exist, their members, and why groups are skipped."""

from __future__ import annotations

import models_prune as mp
import onnx_ir as ir
import pytest

from modelcrunch.analysis.groups import find_groups


def groups_of(proto):
    return find_groups(ir.from_proto(proto))


def test_conv_bn_relu_conv_is_one_group():
    groups = groups_of(mp.conv_bn_relu_conv())
    first = groups[0]
    assert first.prunable and first.size == 8
    kinds = sorted(p.kind for p in first.params)
    assert kinds == ["bn_other", "bn_other", "bn_other", "bn_scale", "weight_in", "weight_out"]
    assert not groups[1].prunable and "graph output" in groups[1].reason


def test_residual_add_couples_both_branches():
    g = groups_of(mp.residual_add())[0]
    assert g.prunable and len(g.producers) == 2 and len(g.consumers) == 2


def test_split_cuts_the_group_into_sub_ranges():
    groups = groups_of(mp.concat_split())
    sizes = sorted(g.size for g in groups if g.producers[0] == "conv1")
    assert sizes == [8, 8]
    assert all(g.prunable for g in groups if g.producers[0] != groups[-1].producers[0])


def test_depthwise_and_squeeze_excitation():
    g = groups_of(mp.depthwise())[0]
    assert g.prunable and g.depthwise
    se = groups_of(mp.squeeze_excitation())[0]
    assert se.prunable and len(se.producers) == 2 and len(se.consumers) == 2


def test_flatten_maps_channels_to_feature_blocks():
    g = groups_of(mp.flatten_gemm())[0]
    gemm = [p for p in g.params if p.kind == "weight_in"][0]
    assert (gemm.axis, gemm.offset, gemm.block) == (1, 0, 16)


@pytest.mark.parametrize("builder", [mp.reaches_output])
def test_group_reaching_graph_output_is_skipped(builder):
    g = groups_of(builder())[0]
    assert not g.prunable and "graph output 'features'" in g.reason


def test_ffn_group_found_and_residual_skipped():
    groups = groups_of(mp.transformer_ffn())
    assert groups[0].prunable and groups[0].size == 16
    assert not groups[1].prunable
