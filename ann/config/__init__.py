"""Config validation (the start-up schema check) and composition outside the
tools (:func:`~ann.config.compose.compose`, :func:`~ann.config.compose.config_dir`)."""
