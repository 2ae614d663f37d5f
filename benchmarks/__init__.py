"""Benchmarks: speed and accuracy against the peers users would pick instead.

Run all with `make bench` (or `python -m benchmarks NAME...`); each writes
docs/benchmarks/NAME.json and a markdown section, assembled into docs/benchmarks.md.
"""
