"""Laws of the small pure functions, checked by hypothesis on generated inputs: the vector-id scheme,
the local-feature codec, the `--db` location parser, the mirror transform and query coverage.

The runs are derandomized (the same examples every run) and kept to about a hundred examples each,
so that they belong to the fast tier (`make check`).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgprov import presets
from imgprov.extract.local_codec import CODEBOOK_PACKAGE, load_centroids, local_codec
from imgprov.extract.rootsift import DESCRIPTOR_DIM, LocalFeatures
from imgprov.geometry import flip_matrix, query_coverage
from imgprov.storage.ids import ITEM_MASK, split_ids, vector_ids
from imgprov.storage.location import Location, parse_location

LAWS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
"""Settings of every property here: deterministic, about a hundred examples, no time limit."""

MAX_ITEMS = ITEM_MASK + 1
image_ids = st.integers(0, 2**40)
item_counts = st.integers(0, MAX_ITEMS)


# --- vector ids (imgprov.storage.ids) ---------------------------------------------------------


@LAWS
@given(image_id=image_ids, count=item_counts)
def test_vector_ids_split_back_into_their_image_and_item_numbers(image_id, count):
    ids = vector_ids(image_id, count)
    images, items = split_ids(ids)
    assert ids.dtype == np.int64 and ids.shape == (count,)
    assert (images == image_id).all()
    np.testing.assert_array_equal(items, np.arange(count))


@LAWS
@given(first=image_ids, second=image_ids, counts=st.tuples(item_counts, item_counts))
def test_vector_ids_of_different_images_never_collide(first, second, counts):
    if first == second:
        second = first + 1
    shared = np.intersect1d(vector_ids(first, counts[0]), vector_ids(second, counts[1]))
    assert shared.size == 0


@LAWS
@given(image_id=image_ids, count=st.integers(MAX_ITEMS + 1, 4 * MAX_ITEMS))
def test_more_vectors_than_the_item_bits_hold_are_refused(image_id, count):
    with pytest.raises(ValueError, match="at most 65536"):
        vector_ids(image_id, count)


# --- local-feature codec (imgprov.extract.local_codec) ----------------------------------------

keypoint_counts = st.integers(0, 24)
image_sizes = st.tuples(st.integers(1, 8000), st.integers(1, 8000))


def geometries(count: int, scale_and_angle: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    """(count, 4) float32 rows of x, y (any finite float32) and scale, angle drawn from
    `scale_and_angle`."""
    positions = hnp.arrays(np.float32, (count, 2), elements=st.floats(width=32, allow_nan=False))
    shapes = hnp.arrays(np.float32, (count, 2), elements=scale_and_angle)
    return st.builds(lambda xy, shape: np.column_stack([xy, shape]), positions, shapes)


@st.composite
def local_features(draw, scale_and_angle: st.SearchStrategy[float]) -> LocalFeatures:
    """One image's features: geometry as `geometries`, (N, 128) uint8 descriptors."""
    count = draw(keypoint_counts)
    geometry = draw(geometries(count, scale_and_angle))
    descriptors = draw(hnp.arrays(np.uint8, (count, DESCRIPTOR_DIM)))
    return LocalFeatures.from_arrays(geometry, descriptors, draw(image_sizes))


any_float32 = st.floats(width=32, allow_nan=False)
float16_range = st.floats(-60000.0, 60000.0, width=32)
"""Scales and angles the float16 geometry can hold (its largest finite value is 65504)."""


@LAWS
@given(features=local_features(any_float32))
def test_the_exact_storage_decodes_to_what_was_encoded(features):
    codec = local_codec(presets.local_storage("rootsift-u8"))
    geometry, descriptors = codec.encode(features)
    decoded = codec.decode(geometry, descriptors, features.image_size)
    assert codec.lossless
    assert (
        len(geometry) + len(descriptors)
        == 144 * len(features)
        == codec.conf.bytes_per_keypoint * len(features)
    )
    np.testing.assert_array_equal(decoded.geometry(), features.geometry())
    np.testing.assert_array_equal(decoded.descriptors, features.descriptors)
    assert decoded.image_size == features.image_size


@LAWS
@given(features=local_features(float16_range))
def test_pq32_keeps_positions_exact_and_scale_and_angle_to_float16(features):
    codec = local_codec(presets.local_storage("rootsift-pq32"))
    geometry, descriptors = codec.encode(features)
    decoded = codec.decode(geometry, descriptors, features.image_size)
    assert not codec.lossless
    assert (len(geometry), len(descriptors)) == (12 * len(features), 32 * len(features))
    assert len(geometry) + len(descriptors) == codec.conf.bytes_per_keypoint * len(features)
    np.testing.assert_array_equal(decoded.keypoints, features.keypoints)
    shape = np.column_stack([features.scales, features.angles])
    np.testing.assert_array_equal(decoded.geometry()[:, 2:], shape.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(decoded.geometry()[:, 2:], shape, rtol=2.0**-11, atol=2.0**-24)
    assert decoded.descriptors.dtype == np.uint8 and decoded.descriptors.shape == (len(features), 128)
    np.testing.assert_array_equal(decoded.descriptors, codec.stored_descriptors(features.descriptors))


@LAWS
@given(descriptors=hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.just(DESCRIPTOR_DIM))))
def test_pq32_codes_name_the_nearest_centroid_of_each_sub_vector(descriptors):
    conf = presets.local_storage("rootsift-pq32")
    codec = local_codec(conf)
    codes = np.frombuffer(codec.encode_descriptors(descriptors), np.uint8).reshape(-1, conf.pq_bytes)
    centroids = load_centroids(resources.files(CODEBOOK_PACKAGE).joinpath(conf.codebook).read_bytes())
    sub_vectors = descriptors.astype(np.float32).reshape(len(descriptors), conf.pq_bytes, -1)
    distances = ((sub_vectors[:, :, None, :] - centroids[None]) ** 2).sum(axis=3)
    chosen = np.take_along_axis(distances, codes[:, :, None].astype(np.intp), axis=2)[:, :, 0]
    np.testing.assert_allclose(chosen, distances.min(axis=2), rtol=1e-5, atol=1e-3)


# --- `--db` locations (imgprov.storage.location) ----------------------------------------------

SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
segments = st.text(SAFE, min_size=1, max_size=12)
paths = st.builds(
    lambda start, parts: start + "/".join(parts),
    st.sampled_from(["", "/", "./", "~/", "../"]),
    st.lists(segments, min_size=1, max_size=5),
)
"""Directory paths: relative, absolute or under the home directory."""
hosts = st.one_of(
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,15}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda quad: ".".join(map(str, quad))),
)
"""Host names and IPv4 addresses (an IPv6 host, `[::1]`, comes back from `describe` unbracketed)."""
ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}"))
collection_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,47}", fullmatch=True)
users = st.text(SAFE, min_size=1, max_size=10)
passwords = st.text(SAFE, min_size=1, max_size=10)
postgres_urls = st.builds(
    lambda scheme, user, host, port, db: f"{scheme}://{user}@{host}{port}/{db}",
    st.sampled_from(["postgresql", "postgres"]),
    users,
    hosts,
    ports,
    segments,
)
sqlite_urls = st.builds(lambda path: f"sqlite:///{path}", paths)


def milvus_urls(sql: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda host, port, name, sql: f"milvus://{host}{port}/{name}?sql={sql}",
        hosts,
        ports,
        collection_names,
        sql,
    )


def fields(location: Location) -> tuple:
    """Everything a location says but the text it was parsed from."""
    return location.path, location.host, location.port, location.name, location.sql


@LAWS
@given(text=st.one_of(paths, milvus_urls(st.one_of(postgres_urls, sqlite_urls))))
def test_a_described_location_parses_to_the_same_location(text):
    location = parse_location(text)
    assert fields(parse_location(location.describe())) == fields(location)


@LAWS
@given(url=postgres_urls, password=passwords, milvus=milvus_urls(st.just("{sql}")))
def test_a_described_location_shows_no_password_and_parses_to_it_with_the_password_hidden(
    url, password, milvus
):
    user, rest = url.split("@", 1)
    location = parse_location(milvus.format(sql=f"{user}:{password}@{rest}"))
    described = parse_location(location.describe())
    assert f":{password}@" not in location.describe()
    assert described.sql == f"{user}:***@{rest}"
    assert fields(described)[:4] == fields(location)[:4]


# --- mirror transform and query coverage (imgprov.geometry) -------------------------------------

widths = st.integers(1, 1 << 20)
sizes = st.tuples(st.integers(1, 600), st.integers(1, 600))


@LAWS
@given(width=widths)
def test_flipping_twice_is_the_identity(width):
    np.testing.assert_array_equal(flip_matrix(width) @ flip_matrix(width), np.eye(3))


@LAWS
@given(pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 64))), data=st.data())
def test_the_flip_maps_each_pixel_to_its_place_in_the_mirrored_image(pixels, data):
    height, width = pixels.shape
    x, y = data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1))
    mirrored_x, mirrored_y, one = flip_matrix(width) @ np.array([x, y, 1.0])
    assert (mirrored_y, one) == (y, 1.0)
    assert pixels[:, ::-1][y, int(mirrored_x)] == pixels[y, x]


@st.composite
def query_boxes(draw, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) anywhere around a (width, height) query: inside, across its edges, outside,
    or inverted."""
    width, height = size
    xs = st.floats(-width, 2.0 * width, allow_nan=False)
    ys = st.floats(-height, 2.0 * height, allow_nan=False)
    return draw(xs), draw(ys), draw(xs), draw(ys)


@LAWS
@given(size=sizes, data=st.data())
def test_keypoint_coverage_is_a_fraction_that_grows_with_each_region(size, data):
    boxes = data.draw(st.lists(query_boxes(size), min_size=1, max_size=6))
    fractions = [query_coverage(boxes[:end], size, keypoint_boxes=True) for end in range(1, len(boxes) + 1)]
    assert all(0.0 <= fraction <= 1.0 for fraction in fractions)
    assert fractions == sorted(fractions)


@LAWS
@given(size=sizes, data=st.data())
def test_area_coverage_is_a_fraction(size, data):
    boxes = data.draw(st.lists(query_boxes(size), max_size=6))
    assert 0.0 <= query_coverage(boxes, size) <= 1.0


@LAWS
@given(size=sizes, data=st.data(), keypoint_boxes=st.booleans())
def test_a_region_over_the_whole_query_covers_all_of_it(size, data, keypoint_boxes):
    width, height = size
    boxes = [(0.0, 0.0, float(width), float(height)), *data.draw(st.lists(query_boxes(size), max_size=3))]
    assert query_coverage(boxes, size, keypoint_boxes=keypoint_boxes) == 1.0


@LAWS
@given(size=sizes, keypoint_boxes=st.booleans(), when_empty=st.sampled_from([0.0, 1.0]))
def test_no_region_covers_what_the_caller_says(size, keypoint_boxes, when_empty):
    assert query_coverage([], size, keypoint_boxes=keypoint_boxes, when_empty=when_empty) == when_empty
