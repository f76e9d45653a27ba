"""saltseg's benchmarks: ``python -m bench`` lists them, ``python -m bench NAME [ARGS]`` runs one.

Shared helpers live in :mod:`bench.common`; parameter tables in ``bench/experiments/*.yaml``;
new results in ``bench/records/<bench>-<YYYY-MM-DD>[-N].json`` (never overwritten), listed with
the older ones in ``bench/README.md`` (``python -m bench table``).
"""
