"""The published serving distribution: a frozen, validated, JSON-round-tripping record (no torch).

Every arm, the control arm included, carries a weight; weights sum to one and the control arm's weight is at
least ``control_share``. A member's propensity is its arm's weight (times nothing else: the exploration slice is
decided before the draw, see ``serving``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bayesopt.errors import DistributionValidationError
from bayesopt.spec import NAME_PATTERN, ExperimentSpec

SCHEMA_VERSION = 1
CONTROL_ARM_ID = "control"
#: Weights are floats written to JSON; their sum may drift by this much and still be "one".
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Arm:
    """One point in parameter space with its serving probability."""

    arm_id: str
    values: Mapping[str, float]
    weight: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def to_dict(self) -> dict[str, Any]:
        return {"arm_id": self.arm_id, "values": dict(self.values), "weight": self.weight}


@dataclass(frozen=True)
class ParameterDistribution:
    """Version ``version`` of an experiment's distribution over arms; immutable once published.

    ``diagnostics`` is free-form JSON produced by the model, conventionally
    ``{"arms": {arm_id: {"metrics": {metric: {"mean", "lower", "upper"}}, "p_feasible", "p_best"}}, ...}``.
    """

    experiment: str
    version: int
    arms: tuple[Arm, ...]
    spec_hash: str
    control_arm_id: str = CONTROL_ARM_ID
    control_share: float = 0.2
    created_at: float = field(default_factory=time.time)
    valid_from: float | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    #: Set on a rollback: the version whose content this one repeats.
    source_version: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        if self.valid_from is None:
            object.__setattr__(self, "valid_from", self.created_at)
        problems = self.problems()
        if problems:
            raise DistributionValidationError(problems)

    # -- validation -------------------------------------------------------------------------------------------
    def problems(self, spec: ExperimentSpec | None = None) -> list[str]:
        """Every broken invariant as ``path: message``; with ``spec``, also bounds and parameter names."""
        out: list[str] = []
        if not isinstance(self.experiment, str) or not NAME_PATTERN.match(self.experiment):
            out.append(f"experiment: invalid name {self.experiment!r}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            out.append(f"version: must be a positive integer, got {self.version!r}")
        if not self.arms:
            out.append("arms: must not be empty")
        seen: set[str] = set()
        total = 0.0
        for i, arm in enumerate(self.arms):
            if not isinstance(arm.arm_id, str) or not NAME_PATTERN.match(arm.arm_id):
                out.append(f"arms[{i}].arm_id: invalid id {arm.arm_id!r}")
            if arm.arm_id in seen:
                out.append(f"arms[{i}].arm_id: duplicate arm id {arm.arm_id!r}")
            seen.add(arm.arm_id)
            w = arm.weight
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                out.append(f"arms[{i}].weight: must be a finite number >= 0, got {w!r}")
            else:
                total += w
            for name, value in arm.values.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    out.append(f"arms[{i}].values.{name}: must be a finite number, got {value!r}")
        if self.arms and abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            out.append(f"arms: weights must sum to 1, got {total:.9g}")
        if not 0 < self.control_share < 1:
            out.append(f"control_share: must be in (0, 1), got {self.control_share!r}")
        control = next((a for a in self.arms if a.arm_id == self.control_arm_id), None)
        if control is None:
            out.append(f"control_arm_id: {self.control_arm_id!r} is not one of the arms")
        elif control.weight + WEIGHT_SUM_TOLERANCE < self.control_share:
            out.append(f"arms.{self.control_arm_id}.weight: {control.weight:.6g} is below control_share {self.control_share}")
        if spec is not None:
            out.extend(self._spec_problems(spec))
        return out

    def _spec_problems(self, spec: ExperimentSpec) -> list[str]:
        out = []
        if self.experiment != spec.name:
            out.append(f"experiment: {self.experiment!r} does not match spec {spec.name!r}")
        names = set(spec.parameter_names)
        for i, arm in enumerate(self.arms):
            if set(arm.values) != names:
                out.append(f"arms[{i}].values: parameters {sorted(arm.values)} differ from the spec's {sorted(names)}")
                continue
            for p in spec.parameters:
                v = arm.values[p.name]
                if not p.lower <= v <= p.upper:
                    out.append(f"arms[{i}].values.{p.name}: {v} is outside the bounds [{p.lower}, {p.upper}]")
        return out

    def validate_against(self, spec: ExperimentSpec) -> None:
        """Raise :class:`DistributionValidationError` unless the arms fit ``spec``."""
        problems = self._spec_problems(spec)
        if problems:
            raise DistributionValidationError(problems)

    # -- access -----------------------------------------------------------------------------------------------
    @property
    def weights(self) -> list[float]:
        """Arm weights, in arm order (``k``)."""
        return [a.weight for a in self.arms]

    def arm(self, arm_id: str) -> Arm:
        """The arm called ``arm_id``; raises ``KeyError`` if there is none."""
        for a in self.arms:
            if a.arm_id == arm_id:
                return a
        raise KeyError(arm_id)

    @property
    def control_arm(self) -> Arm:
        return self.arm(self.control_arm_id)

    # -- JSON -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "experiment": self.experiment,
            "version": self.version,
            "created_at": self.created_at,
            "valid_from": self.valid_from,
            "spec_hash": self.spec_hash,
            "control_arm_id": self.control_arm_id,
            "control_share": self.control_share,
            "arms": [a.to_dict() for a in self.arms],
            "diagnostics": plain_json(self.diagnostics),
            "source_version": self.source_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ParameterDistribution:
        """Read a document written by :meth:`to_dict` (any supported ``schema_version``)."""
        if not isinstance(doc, Mapping):
            raise DistributionValidationError(f"(document): expected a mapping, got {type(doc).__name__}")
        schema = doc.get("schema_version")
        if schema != SCHEMA_VERSION:
            raise DistributionValidationError(f"schema_version: unsupported {schema!r} (this build reads {SCHEMA_VERSION})")
        missing = [k for k in ("experiment", "version", "arms", "spec_hash", "created_at") if k not in doc]
        if missing:
            raise DistributionValidationError([f"{k}: is required" for k in missing])
        try:
            arms = tuple(Arm(a["arm_id"], a["values"], a["weight"]) for a in doc["arms"])
        except (KeyError, TypeError) as exc:
            raise DistributionValidationError(f"arms: each arm needs arm_id, values and weight ({exc!r})") from None
        return cls(
            experiment=doc["experiment"],
            version=doc["version"],
            arms=arms,
            spec_hash=doc["spec_hash"],
            control_arm_id=doc.get("control_arm_id", CONTROL_ARM_ID),
            control_share=doc.get("control_share", 0.2),
            created_at=doc["created_at"],
            valid_from=doc.get("valid_from"),
            diagnostics=doc.get("diagnostics") or {},
            source_version=doc.get("source_version"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ParameterDistribution:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DistributionValidationError(f"(document): not valid JSON: {exc}") from None
        return cls.from_dict(doc)

    def replace(self, **changes: Any) -> ParameterDistribution:
        """A copy with ``changes`` applied (validated again)."""
        doc = {
            "experiment": self.experiment, "version": self.version, "arms": self.arms, "spec_hash": self.spec_hash,
            "control_arm_id": self.control_arm_id, "control_share": self.control_share,
            "created_at": self.created_at, "valid_from": self.valid_from, "diagnostics": self.diagnostics,
            "source_version": self.source_version,
        }
        doc.update(changes)
        return ParameterDistribution(**doc)


def normalize_weights(weights: Sequence[float]) -> list[float]:
    """Scale non-negative ``weights`` to sum to exactly one in floating point (the last absorbs rounding)."""
    total = float(sum(weights))
    if total <= 0:
        raise DistributionValidationError("arms: weights must have a positive sum")
    out = [float(w) / total for w in weights]
    out[-1] = max(0.0, 1.0 - sum(out[:-1]))
    return out


def plain_json(value: Any) -> Any:
    """Turn mapping proxies and tuples (recursively) into the dicts and lists ``json.dumps`` writes."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value
