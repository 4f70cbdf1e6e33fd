"""Object regions of an image: up to k boxes (OE-SIR's B in Eq. 1), class-agnostic or detected.

Every method returns boxes in the original image's pixels, (x0, y0, x1, y1) with pixel k spanning
[k, k + 1), so a box of the whole W x H image is (0, 0, W, H). Boxes come best first; with
`whole_image` the first one is the whole image.

grid: the R-MAC region layout (Tolias et al.): at level l an l x l grid of overlapping regions, each
    2 / (l + 1) of the image's width and height, level by level, central regions first. It knows
    nothing of the image's content.
selective: OpenCV's selective search (single strategy: colour, texture, size and fill similarities
    over one Felzenszwalb segmentation; its "fast" mode costs far more), in its own order.
saliency: blobs of the spectral-residual saliency map (Hou & Zhang), thresholded at several levels,
    ranked by the saliency they hold.
detector: COCO detections of CenterNet (`imgprov.extract.objects.detector`), by confidence.
"""

from __future__ import annotations

import cv2
import numpy as np

from imgprov.extract.objects.conf import ProposalConf
from imgprov.extract.sscd import check_image
from imgprov.geometry import box_areas, box_iou, clip_boxes, working_copy

SALIENCY_LEVELS = (1.0, 2.0, 3.0)
"""Thresholds of the smoothed saliency map, in standard deviations above its mean."""
GRID_LEVELS = 4


def propose(image: np.ndarray, conf: ProposalConf, detector=None) -> np.ndarray:
    """Up to `conf.max_objects` boxes of `image` ((H, W, 3) uint8 RGB).

    Returns (k, 4) float32 (x0, y0, x1, y1) in original pixels, 1 <= k <= max_objects, inside the
    image, best first. `detector` (an `imgprov.extract.objects.detector.Detector`) is required by the
    "detector" method and ignored by the others.
    """
    check_image(image)
    height, width = image.shape[:2]
    whole = np.array([[0.0, 0.0, width, height]])
    wanted = conf.max_objects - int(conf.whole_image)
    candidates = _candidates(image, conf, detector) if wanted > 0 else np.zeros((0, 4))
    chosen = select_boxes(
        candidates, (width, height), conf, wanted, prior=whole if conf.whole_image else None
    )
    boxes = np.concatenate([whole, chosen]) if conf.whole_image else chosen
    if len(boxes) == 0:
        boxes = whole
    return clip_boxes(boxes, (width, height)).astype(np.float32)


def _candidates(image: np.ndarray, conf: ProposalConf, detector) -> np.ndarray:
    """(N, 4) float64 candidate boxes in original pixels, best first."""
    height, width = image.shape[:2]
    if conf.method == "grid":
        return grid_boxes((width, height))
    if conf.method == "detector":
        if detector is None:
            raise ValueError("the detector proposal method needs a detector")
        return detector.detect(image, conf.min_score).boxes.astype(np.float64)
    small, scale = working_copy(image, conf.working_side)
    found = selective_search_boxes(small) if conf.method == "selective" else saliency_boxes(small)
    return found / scale


def grid_boxes(size: tuple[int, int], levels: int = GRID_LEVELS) -> np.ndarray:
    """(N, 4) float64 R-MAC style regions of a (width, height) image, level 2 to `levels`, each
    level's regions ordered by the distance of their centre to the image's centre."""
    width, height = size
    boxes = []
    for level in range(2, levels + 1):
        extent = 2.0 / (level + 1)
        starts = np.linspace(0.0, 1.0 - extent, level)
        regions = np.array([[x, y, x + extent, y + extent] for y in starts for x in starts])
        centres = (regions[:, :2] + regions[:, 2:]) / 2 - 0.5
        boxes.append(regions[np.argsort(np.hypot(*centres.T), kind="stable")])
    return np.concatenate(boxes) * np.array([width, height, width, height], np.float64)


def selective_search_boxes(image: np.ndarray) -> np.ndarray:
    """(N, 4) float64 selective-search boxes of an (H, W, 3) uint8 RGB image, in its pixels."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[:, :, ::-1]))
    search.switchToSingleStrategy()
    rects = np.asarray(search.process(), np.float64).reshape(-1, 4)
    return np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]])


def saliency_boxes(image: np.ndarray) -> np.ndarray:
    """(N, 4) float64 boxes of salient blobs of an (H, W, 3) uint8 RGB image, most salient first."""
    saliency = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, level = saliency.computeSaliency(np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        return np.zeros((0, 4))
    level = cv2.GaussianBlur(level.astype(np.float32), (0, 0), max(1.0, max(image.shape[:2]) / 64))
    mean, deviation = float(level.mean()), float(level.std())
    boxes, mass = [], []
    for threshold in SALIENCY_LEVELS:
        above = (level > mean + threshold * deviation).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
        for label in range(1, count):
            x, y, w, h = stats[label, :4]
            boxes.append((x, y, x + w, y + h))
            mass.append(float(level[labels == label].sum()))
    if not boxes:
        return np.zeros((0, 4))
    return np.array(boxes, np.float64)[np.argsort(-np.array(mass), kind="stable")]


def select_boxes(
    candidates: np.ndarray,
    size: tuple[int, int],
    conf: ProposalConf,
    count: int,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """The first `count` candidates (N, 4) whose area fraction lies within [min_area, max_area] and
    whose IoU with every box kept before (and with `prior` boxes) is at most `max_overlap`."""
    width, height = size
    boxes = clip_boxes(np.asarray(candidates, np.float64).reshape(-1, 4), size)
    area = box_areas(boxes) / float(width * height)
    boxes = boxes[(area >= conf.min_area) & (area <= conf.max_area)]
    kept: list[np.ndarray] = [] if prior is None else list(prior)
    first_new = len(kept)
    for box in boxes:
        if len(kept) - first_new >= count:
            break
        if not kept or box_iou(box[None], np.array(kept)).max() <= conf.max_overlap:
            kept.append(box)
    return np.array(kept[first_new:], np.float64).reshape(-1, 4)
