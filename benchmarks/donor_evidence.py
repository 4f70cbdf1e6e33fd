"""How much local evidence each donor's pasted region carries, measured with the ground truth.

A composite's donor can only be found from what was pasted: a region cut at random from the donor
photo, which may be a textured object or a patch of plain background or sky. This oracle measures
the best case for local features: the query's pasted pixels (the donor's own mask, cropped and
enlarged so that the region gets its own keypoints) matched against the donor photo itself with
imgprov's verification (ratio test, MAGSAC++). A donor whose region reaches the verification's
`min_inliers` here is "identifiable"; one that does not gives local features too little to go on
whatever the search does, and retrieving it rests on the global and object stages alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from benchmarks.queries import ROLE_DONOR, Query, load_mask
from imgprov import presets
from imgprov.extract.rootsift import LocalFeatures, extract_rootsift
from imgprov.images import load_image
from imgprov.verify import verify_pair

CROP_SIDE = 768
"""The pasted region's crop is resized to this long side before its keypoints are detected."""


def region_features(pixels: np.ndarray, mask: np.ndarray, conf: presets.LocalFeatureConf) -> LocalFeatures:
    """RootSIFT of the pixels under mask ((H, W) bool) of an (H, W, 3) uint8 image, detected on
    the mask's bounding box resized to CROP_SIDE; keypoints in the image's pixels."""
    rows, columns = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    crop = pixels[top:bottom, left:right]
    factor = CROP_SIDE / max(crop.shape[:2])
    interpolation = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
    resized = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=interpolation)
    crop_conf = presets.LocalFeatureConf(name="oracle", max_keypoints=conf.max_keypoints, max_side=CROP_SIDE)
    found = extract_rootsift(resized, crop_conf)
    points = found.keypoints / factor + np.array([left, top], np.float32)
    columns_at = np.clip(np.rint(points[:, 0]).astype(int), 0, mask.shape[1] - 1)
    rows_at = np.clip(np.rint(points[:, 1]).astype(int), 0, mask.shape[0] - 1)
    inside = mask[rows_at, columns_at]
    return LocalFeatures(
        keypoints=points[inside].astype(np.float32),
        scales=(found.scales / factor)[inside].astype(np.float32),
        angles=found.angles[inside],
        descriptors=found.descriptors[inside],
        image_size=(pixels.shape[1], pixels.shape[0]),
    )


def donor_inliers(
    query: Query, donor_paths: Mapping[str, Path], local: presets.LocalFeatureConf, verify: presets.VerifyConf
) -> dict[str, int]:
    """{donor id: inliers of the best transform between its pasted region and the donor photo}
    for every donor of a composite query (0 when its region has no pixel left or no transform)."""
    pixels = load_image(query.image_path).pixels
    found = {}
    for relevant in query.relevant:
        if relevant.role != ROLE_DONOR or relevant.mask_path is None:
            continue
        mask = load_mask(relevant.mask_path)
        if not mask.any():
            found[relevant.image_id] = 0
            continue
        region = region_features(pixels, mask, local)
        donor = extract_rootsift(load_image(donor_paths[relevant.image_id]).pixels, local)
        regions = verify_pair(region, donor, np.zeros((0, 2), np.int32), verify)
        found[relevant.image_id] = max((r.inliers for r in regions), default=0)
    return found
