"""Train the product-quantization codebooks of the compressed local-storage presets.

    python scripts/train_local_pq.py                   # rootsift-pq32, into src/imgprov/extract/codebooks
    python scripts/train_local_pq.py --check           # train again and compare with the shipped file

Reproducible on a fresh machine after `make corpus`. Steps:

1. Split the benchmark corpus as `benchmarks.run` does with seed 0 and take the distractor-source
   photos: scenes that are never a collection original nor a held-out query photo at any benchmark
   size (checked here). The benchmark collections do hold distractor tiles cut from them, so the
   codebook has seen database-side content, never a query's or an original's.
2. Extract RootSIFT with the default local-feature preset (the one collections use) from each of
   them and draw up to SAMPLE_PER_PHOTO descriptors per photo with a fixed seed.
3. Hold out every fifth photo's descriptors; train FAISS's ProductQuantizer (M sub-quantizers of
   256 centroids over 128 / M dimensions, on the uint8 values as float32) on the rest with one
   thread (k-means is then deterministic) and report the reconstruction error on the held-out ones.
4. Write the (M, 256, 128 / M) float32 centroids as `.npy` and print the sha256 that the preset in
   imgprov/presets.py (`LOCAL_STORAGES`) must pin.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "src")]

from benchmarks import corpus  # noqa: E402
from benchmarks.run import SIZES, split_corpus  # noqa: E402
from imgprov import presets  # noqa: E402
from imgprov.extract.local_codec import PQ_BITS, quantizer_from_centroids  # noqa: E402
from imgprov.extract.rootsift import DESCRIPTOR_DIM, extract_rootsift  # noqa: E402
from imgprov.images import load_image  # noqa: E402

CODEBOOKS = REPO / "src" / "imgprov" / "extract" / "codebooks"
SPLIT_SEED = 0
SAMPLE_SEED = 7
SAMPLE_PER_PHOTO = 1000
HELD_OUT_EVERY = 5


def training_photos(data: Path) -> list[corpus.CorpusPhoto]:
    """The distractor-source photos of the seed-0 split, checked disjoint from every size's
    originals and held-out photos."""
    photos = corpus.load_corpus(data)
    sources = split_corpus(photos, SIZES["small"], SPLIT_SEED).distractor_sources
    ids = {photo.photo_id for photo in sources}
    for size in SIZES.values():
        split = split_corpus(photos, size, SPLIT_SEED)
        if ids & (set(split.originals) | set(split.held_out)):
            raise SystemExit(f"training photos overlap the {size.name} benchmark's originals or queries")
    return sources


def sample_descriptors(photo: corpus.CorpusPhoto, rng: np.random.Generator) -> np.ndarray:
    """Up to SAMPLE_PER_PHOTO (n, 128) uint8 RootSIFT descriptors of one photo."""
    features = extract_rootsift(load_image(photo.path).pixels, presets.local_features())
    keep = rng.permutation(len(features))[:SAMPLE_PER_PHOTO]
    return features.descriptors[np.sort(keep)]


def train(samples: np.ndarray, sub_quantizers: int) -> np.ndarray:
    """(M, 256, 128 / M) float32 centroids trained on (n, 128) uint8 descriptors."""
    faiss.omp_set_num_threads(1)
    quantizer = faiss.ProductQuantizer(DESCRIPTOR_DIM, sub_quantizers, PQ_BITS)
    quantizer.train(np.ascontiguousarray(samples, np.float32))
    centroids = faiss.vector_to_array(quantizer.centroids)
    return centroids.reshape(sub_quantizers, 1 << PQ_BITS, DESCRIPTOR_DIM // sub_quantizers)


def relative_error(centroids: np.ndarray, descriptors: np.ndarray) -> float:
    """Mean ||d - decode(encode(d))|| / ||d|| over (n, 128) uint8 descriptors."""
    quantizer = quantizer_from_centroids(centroids)
    vectors = descriptors.astype(np.float32)
    decoded = quantizer.decode(quantizer.compute_codes(vectors))
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-6)
    return float(np.mean(np.linalg.norm(vectors - decoded, axis=1) / norms))


def npy_bytes(centroids: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(centroids, np.float32), allow_pickle=False)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        default="rootsift-pq32",
        choices=[name for name, conf in presets.LOCAL_STORAGES.items() if conf.pq_bytes],
    )
    parser.add_argument("--data", type=Path, default=corpus.DEFAULT_DATA_DIR)
    parser.add_argument("--check", action="store_true", help="compare with the shipped codebook")
    args = parser.parse_args(argv)
    conf = presets.local_storage(args.preset)
    photos = training_photos(args.data)
    rng = np.random.default_rng(SAMPLE_SEED)
    per_photo = [sample_descriptors(photo, rng) for photo in photos]
    train_set = np.concatenate([d for i, d in enumerate(per_photo) if i % HELD_OUT_EVERY])
    held_out = np.concatenate(per_photo[::HELD_OUT_EVERY])
    centroids = train(train_set, conf.pq_bytes)
    data = npy_bytes(centroids)
    digest = hashlib.sha256(data).hexdigest()
    print(f"{len(photos)} photos, {len(train_set)} training / {len(held_out)} held-out descriptors")
    print(f"held-out relative reconstruction error: {relative_error(centroids, held_out):.4f}")
    print(f"{conf.codebook}: {len(data)} bytes, sha256 {digest}")
    target = CODEBOOKS / conf.codebook
    if args.check:
        same = target.is_file() and target.read_bytes() == data
        print("identical to the shipped codebook" if same else "DIFFERS from the shipped codebook")
        return 0 if same else 1
    target.write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
