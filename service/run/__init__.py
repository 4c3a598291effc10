"""The process side: the `mlp-serve` command, the draining server and the `--workers` supervisor."""
