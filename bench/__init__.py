"""saltseg's benchmarks: ``python -m bench`` lists them, ``python -m bench NAME [ARGS]`` runs one.

Shared helpers live in :mod:`bench.common`; parameter tables in ``bench/experiments/*.yaml``;
every result in ``bench/records/`` (new ones as ``<bench>-<YYYY-MM-DD>[-N].json``, never
overwritten), listed in ``bench/README.md`` (``python -m bench table``).
"""
