"""The benchmarks: `make bench` (or `python -m bench --help`).

Each figure is measured next to its ceiling in the same run, and reported with their ratio,
because absolute times on a shared machine are noisy.
"""
