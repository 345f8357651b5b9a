"""Quire's benchmarks (issue #8): ``make bench`` or ``python -m bench [--quick] [--only NAME]``.

Each scenario starts what it needs the way the Procfile runs it (gunicorn with uvicorn workers,
one ``rqworker`` per queue with the Procfile's flags, ``rqscheduler``), against a database and
a Redis database of its own (``var/bench.sqlite3``, Redis db 14), measures a few runs, and
reports each figure as a ratio to a baseline measured in the same run. Benchmarks, not tests:
a missed target is reported, never raised. See ``bench/README.md``.
"""
