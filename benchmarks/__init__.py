"""Benchmarks of imgprov: corpus fetching, workloads and scoring."""
