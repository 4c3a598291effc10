"""Benchmark only: an mlp-serve whose JSON bodies all take the exact path (orjson + np.asarray).

That is the path every JSON request took before the simdjson one (service/jsontensors.py), and
the one it still falls back to. bench/serve_load.py puts this folder first on PYTHONPATH of a
second mlp-serve, so the 256-row JSON goal ("2x the rows/s before") is also measured against
the path it replaced, in the same run, on the same machine: the absolute figure it was set
against came from a machine that ran twice as fast as this VM on some hours. Python imports
`sitecustomize` at start-up in every interpreter, the spawned workers included.
"""

import sys

import service.jsontensors

service.jsontensors.MIN_BYTES = sys.maxsize  # no body is big enough: always the exact path
