"""The project's exception types (re-exported by ``analog_compiler``)."""


class AnalogCompilerError(Exception):
    """Base class of every error analog-compiler raises on purpose."""


class ModuleError(AnalogCompilerError, RuntimeError):
    """An analog layer was used in a state that does not allow the call (aihwkit's name): e.g.
    programming or drifting in training mode, or loading an incompatible checkpoint."""
