"""The bodies of the tools/ scripts, one module each, named like the script."""
