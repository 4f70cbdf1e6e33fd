"""Product-quantization codebooks of the compressed local-storage presets (`imgprov.extract.local_codec`),
written by scripts/train_local_pq.py: (M, 256, 128 / M) float32 centroids as `.npy`."""
