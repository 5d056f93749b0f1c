"""Errors a user can cause; entry points print them as one line and exit non-zero."""


class UserError(Exception):
    """Bad input from the user: a config key, a file, a checkpoint."""


class DataError(UserError):
    """A dataset file or folder is missing or malformed."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class ConfigError(UserError):
    """A config key is missing or has an unusable value."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
