"""Package exceptions: one root, narrow subclasses, messages that name the problem and the fix."""


class UrcdcDepthError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(UrcdcDepthError, ValueError):
    """A configuration value is invalid (raised at start-up, never per frame)."""


class CheckpointError(UrcdcDepthError):
    """A checkpoint cannot be read or does not fit the model."""


class BackendError(UrcdcDepthError):
    """An inference backend cannot be created or run (missing/corrupt model, stale engine)."""


class InputError(UrcdcDepthError, ValueError):
    """One input (image, intrinsics, message) is malformed; the caller drops it and goes on."""


class DataError(UrcdcDepthError):
    """A data set, split file or bag is missing, malformed or unreadable."""


class NodeError(UrcdcDepthError, RuntimeError):
    """The ROS node under replay did not start, stopped subscribing, or died."""


class TrainingDivergedError(UrcdcDepthError, RuntimeError):
    """A loss became NaN/inf; training stopped and the last good checkpoint was kept."""
