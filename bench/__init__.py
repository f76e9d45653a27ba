"""saltseg's benchmarks: ``python -m bench`` lists them, ``python -m bench NAME [ARGS]`` runs one.

Shared helpers live in :mod:`bench.common` and :mod:`bench.fold0`; parameter tables in
``bench/experiments/*.yaml``; every result in ``bench/records/`` (new ones as
``<bench>-<YYYY-MM-DD>[-N].json``, never overwritten), each with its row in the index
``bench/README.md``, appended as it is written (``python -m bench table`` checks it).
"""
