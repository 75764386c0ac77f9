"""Pure modelling for online parameter selection.

Importing this package loads only the light records (spec, distribution, observations); model code (torch,
botorch) loads when ``bayesopt.policy`` or its siblings are imported.

Glossary used in docstrings: ``n`` observations, ``d`` parameters, ``m`` metrics, ``s`` posterior draws,
``k`` arms, ``N`` candidates.
"""

from bayesopt.distribution import CONTROL_ARM_ID, Arm, ParameterDistribution, normalize_weights
from bayesopt.errors import (
    BayesoptError,
    DistributionValidationError,
    InsufficientDataError,
    ModelFitError,
    ObservationValidationError,
    SpecValidationError,
    ValidationError,
)
from bayesopt.observations import SOURCES, STAT_COLUMNS, ObservationStat, parse_rows
from bayesopt.spec import ExperimentSpec, Guardrail, Metric, Objective, Parameter, PolicySettings, Refit, Traffic

__all__ = [
    "CONTROL_ARM_ID", "SOURCES", "STAT_COLUMNS", "Arm", "BayesoptError", "DistributionValidationError",
    "ExperimentSpec", "Guardrail", "InsufficientDataError", "Metric", "ModelFitError", "Objective",
    "ObservationStat", "ObservationValidationError", "ParameterDistribution", "Parameter", "PolicySettings", "Refit",
    "SpecValidationError", "Traffic", "ValidationError", "normalize_weights", "parse_rows",
]
