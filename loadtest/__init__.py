"""Proof under fire: fuzz request counting, crash (chaos), concurrency and load runs.

Every run talks to real uvicorn processes on 127.0.0.1 only. The same code drives the short
CI tests (tests/reliability/test_chaos.py, tests/reliability/test_scaleout.py) and the long
``make`` runs:

- ``make fuzz``   tests/reliability/test_fuzz.py at 150 examples with the coverage phase,
                  counted by the pytest plugin ``loadtest.fuzzcount``
- ``make chaos``  ``python -m loadtest.chaos``: ingest and journeys while the server is
                  SIGKILLed and restarted; every acknowledged write present exactly once
- ``make load``   ``python -m loadtest.load`` (throughput and latency beside the echo),
                  ``python -m loadtest.concurrency`` (several API processes and schedulers
                  on one database) and ``python -m loadtest.failover`` (leader handover)
"""
