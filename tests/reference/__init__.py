"""Test-only re-implementations of the source code that published ANN
checkpoints come from, module for module, so that their state dicts have the
source's exact keys and their forward passes the source's arithmetic."""
