"""Independent PyTorch re-implementations used as references by the tests and benchmarks."""
