"""Benchmarks: commands that measure, never tests. `fsp bench` runs the suite (bench.suite); each other
module runs alone with `python -m bench.NAME` (growth, live, serve, state, sink, follow)."""
