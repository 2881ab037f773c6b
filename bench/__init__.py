"""Benchmarks: dial-in hold time, dial-out, status fan-out and query counts.

Run ``python -m bench.<name> --help`` (dialin, dialout, status, queries). Each
prints a table and writes JSON to ``bench/out/``. Results and the changes they
justified are in ``bench/RESULTS.md``.
"""
