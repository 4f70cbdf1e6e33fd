"""The provenance of a composite as a picture: the query with each donor's region outlined and
labelled, and the host's regions in another colour (`imgprov search --overlay OUT.png`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from imgprov.objects.retrieve import ROLE_HOST, FusedMatch
from imgprov.pictures.raster import write_png

HOST_COLOUR = (255, 255, 255)
DONOR_COLOURS = ((255, 200, 0), (255, 80, 80), (80, 220, 120), (90, 170, 255), (230, 90, 255))
LABEL_SCALE = 0.45


def draw_provenance(
    query: np.ndarray, matches: Sequence[FusedMatch], names: Mapping[int, str] | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the query, dimmed slightly, with every match's regions outlined.

    query: (H, W, 3) uint8 RGB; matches: `fuse`'s output; names: a label per image id (a file
    name, say), else the image id. Hosts are drawn first, in white, labelled "host: name"; each
    donor gets its own colour and the label "donor n: name (score)" at its region's corner.
    """
    picture = (np.asarray(query, np.float32) * 0.85).astype(np.uint8)
    thickness = max(1, round(max(query.shape[:2]) / 300))
    ordered = sorted(matches, key=lambda match: (match.role != ROLE_HOST, match.rank))
    donor_number = 0
    for match in ordered:
        name = (names or {}).get(match.image_id, str(match.image_id))
        if match.role == ROLE_HOST:
            colour, label = HOST_COLOUR, f"host: {name}"
        else:
            colour = DONOR_COLOURS[donor_number % len(DONOR_COLOURS)]
            donor_number += 1
            label = f"donor {donor_number}: {name} ({match.score:.2f})"
        for region in match.regions:
            _outline(picture, region.query_box, colour, thickness, label)
    return picture


def _outline(
    picture: np.ndarray, box: tuple[float, float, float, float], colour, thickness: int, label: str
) -> None:
    height, width = picture.shape[:2]
    x0, y0 = int(np.clip(round(box[0]), 0, width - 1)), int(np.clip(round(box[1]), 0, height - 1))
    x1, y1 = int(np.clip(round(box[2]) - 1, x0, width - 1)), int(np.clip(round(box[3]) - 1, y0, height - 1))
    cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
    (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, 1)
    top = y0 + thickness if y0 - text_height - baseline - 2 < 0 else y0 - text_height - baseline - 2
    left = min(x0, max(0, width - text_width - 2))
    cv2.rectangle(
        picture, (left, top), (left + text_width + 2, top + text_height + baseline + 2), (0, 0, 0), -1
    )
    cv2.putText(
        picture,
        label,
        (left + 1, top + text_height + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        LABEL_SCALE,
        colour,
        1,
        cv2.LINE_AA,
    )


def write_provenance(
    path: Path, query: np.ndarray, matches: Sequence[FusedMatch], names: Mapping[int, str] | None = None
) -> None:
    """Write `draw_provenance` as a PNG; a one-line `ImgprovError` when it cannot be written."""
    write_png(path, draw_provenance(query, matches, names))
