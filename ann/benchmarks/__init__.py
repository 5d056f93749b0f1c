"""Benchmarks run by tools/benchmark.py: one module per subcommand, each with
``main(argv: list[str]) -> dict`` that prints a table and returns the figures."""

SUBCOMMANDS = ("heads", "model", "data", "eval", "train", "infer", "predict", "compare")
