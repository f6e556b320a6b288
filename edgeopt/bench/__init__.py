"""Benchmarks: cold start in fresh processes, warm latency / throughput / memory, a regression gate.

Importing this package is cheap (no numpy, no runtime): the cold-start child process imports
``edgeopt.bench.child`` and must pay only for numpy and the one runtime it measures.

Layout: ``profiles`` (targets cpu / mobile / gpu), ``candidates`` (what ARTIFACT expands to),
``child`` + ``warm`` (run inside the measured process), ``driver`` (spawns and interleaves
children), ``stats`` + ``gate`` (noise-robust regression check), ``records`` (the JSON of
DESIGN.md and pytest-benchmark JSON), ``env``, ``report`` (HTML + PNG), ``run`` (the entry point).
"""
