"""Exceptions of the modelling package; each co-inherits the built-in a caller would catch."""

from __future__ import annotations


class BayesoptError(Exception):
    """Root of every error raised by :mod:`bayesopt`."""


class ValidationError(BayesoptError, ValueError):
    """A record or input is malformed; ``problems`` lists each one as ``path: message``."""

    def __init__(self, problems: list[str] | str, *, what: str = "input") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.what = what
        super().__init__(f"invalid {what}: " + "; ".join(self.problems))


class SpecValidationError(ValidationError):
    """An experiment spec failed validation; fix the named fields and submit again."""

    def __init__(self, problems: list[str] | str) -> None:
        super().__init__(problems, what="experiment spec")


class DistributionValidationError(ValidationError):
    """A parameter distribution broke an invariant (weights, bounds, arm ids)."""

    def __init__(self, problems: list[str] | str) -> None:
        super().__init__(problems, what="distribution")


class ObservationValidationError(ValidationError):
    """An observation row is malformed; nothing of its batch was accepted."""

    def __init__(self, problems: list[str] | str) -> None:
        super().__init__(problems, what="observations")


class ModelFitError(BayesoptError, RuntimeError):
    """A GP could not be fitted to the data; keep the previous distribution."""


class InsufficientDataError(BayesoptError, ValueError):
    """There are too few observations to fit a model; keep the previous distribution."""


class AxConversionError(ValidationError):
    """An Ax experiment uses something the service cannot express (``problems`` names each); change it in Ax."""

    def __init__(self, problems: list[str] | str) -> None:
        super().__init__(problems, what="Ax experiment")
