"""bpr-numba: fast BPR (triplet loss) recommenders on the CPU with Numba."""

__version__ = "0.1.0"
