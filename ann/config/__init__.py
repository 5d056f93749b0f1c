"""Config validation (the start-up schema check)."""
