"""Pictures for people: the OS2OS vote density over the query (paper 002, Fig. 7)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from imgprov.pictures.raster import false_colour
from imgprov.results import Role, SearchResult

BOX_COLOURS = ((255, 255, 255), (80, 220, 255), (255, 120, 80), (120, 255, 120), (255, 80, 200))


def vote_density(result: SearchResult, sigma_fraction: float = 0.02) -> np.ndarray:
    """(H, W) float32 in [0, 1]: Gaussian-splatted OS2OS votes over the query.

    Votes are weighted by match affinity times their cluster's OS2OS score. Each candidate's density
    is normalized to peak at 1 and the maximum over candidates is shown, so a small donor object is
    as visible as the host; only matched candidates are drawn when there are any.
    """
    matched = {match.image_id for match in result.matches}
    clusters = [cluster for cluster in result.votes if cluster.image_id in matched] or list(result.votes)
    sigma = max(2.0, sigma_fraction * float(np.hypot(result.width, result.height)))
    combined = np.zeros((result.height, result.width), np.float32)
    for image_id in sorted({cluster.image_id for cluster in clusters}):
        density = np.zeros_like(combined)
        for cluster in clusters:
            if cluster.image_id != image_id:
                continue
            xs = np.clip(np.rint(cluster.points[:, 0]).astype(int), 0, result.width - 1)
            ys = np.clip(np.rint(cluster.points[:, 1]).astype(int), 0, result.height - 1)
            np.add.at(density, (ys, xs), cluster.weights * np.float32(cluster.score))
        density = cv2.GaussianBlur(density, (0, 0), sigma)
        peak = float(density.max())
        if peak > 0:
            np.maximum(combined, density / peak, out=combined)
    return combined


def draw_vote_map(pixels: np.ndarray, result: SearchResult, top: int = 5) -> np.ndarray:
    """The query dimmed, the vote density in false colour over it, and the top matches' regions.

    pixels: (H, W, 3) uint8 RGB query. Returns (H, W, 3) uint8 RGB.
    """
    density = vote_density(result)
    heat = false_colour(density)
    alpha = (0.15 + 0.6 * density)[:, :, None]
    picture = (pixels.astype(np.float32) * 0.6 * (1 - alpha) + heat.astype(np.float32) * alpha).astype(
        np.uint8
    )
    thickness = max(1, round(max(result.width, result.height) / 400))
    for number, match in enumerate(result.matches[:top]):
        colour = BOX_COLOURS[number % len(BOX_COLOURS)]
        for region in match.regions:
            x0, y0, x1, y1 = (round(v) for v in region.query_box)
            cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness)
            label = f"#{match.rank} {Path(match.path).name}"
            cv2.putText(
                picture,
                label,
                (x0 + 3, max(12, y0 + 14)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                colour,
                1,
                cv2.LINE_AA,
            )
    return picture


ROLE_COLOURS = {Role.HOST: (60, 200, 255), Role.DONOR: (255, 170, 40)}


def draw_roles(pixels: np.ndarray, result: SearchResult) -> np.ndarray:
    """The query with each match's regions outlined and labelled with its role, rank and file name.

    pixels: (H, W, 3) uint8 RGB query. Returns (H, W, 3) uint8 RGB.
    """
    picture = np.ascontiguousarray(pixels.copy())
    thickness = max(2, round(max(result.width, result.height) / 300))
    scale = max(0.45, max(result.width, result.height) / 1400)
    ordered = sorted(result.matches, key=lambda match: match.role != Role.HOST)
    for match in ordered:
        colour = ROLE_COLOURS.get(match.role or Role.DONOR, (255, 255, 255))
        for region in match.regions or ():
            x0, y0, x1, y1 = (round(v) for v in region.query_box)
            cv2.rectangle(picture, (x0, y0), (x1, y1), colour, thickness)
            label = f"{match.role or 'match'} #{match.rank}: {Path(match.path).name}"
            _label(picture, label, (x0 + thickness, y0 + thickness), colour, scale)
    return picture


def _label(picture: np.ndarray, text: str, origin: tuple[int, int], colour: tuple, scale: float) -> None:
    """Text on a dark box, kept inside the picture."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(0, origin[0]), max(0, picture.shape[1] - width - 4))
    y = min(max(height + 4, origin[1] + height + 4), picture.shape[0] - baseline)
    cv2.rectangle(picture, (x, y - height - 4), (x + width + 4, y + baseline), (0, 0, 0), -1)
    cv2.putText(picture, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
