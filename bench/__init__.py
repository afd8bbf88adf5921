"""Benchmarks (not tests): ingest figures beside a reference measured in the same run.

``python -m bench`` (``make bench``) runs them all; ``python -m bench p1 p3`` runs a subset;
``--strict`` exits 1 when a goal is missed; ``--profile DIR`` records each server with
py-spy. Each benchmark builds its own databases (a temp dir for SQLite,
``v2v_bench_<random>`` on PostgreSQL at 127.0.0.1), serves the app with uvicorn in a
subprocess and cleans up after itself, also when interrupted.

Modules: harness (figures, statistics, databases), serving (the uvicorn subprocess and the
HTTP clients), world (shipments in transit, loggers and their readings), server (the app
plus a bare echo endpoint for P2), and one module per benchmark.
"""
