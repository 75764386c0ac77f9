"""The experiment spec: what to tune, what to improve, what must not fall.

A light record (no torch): ``param_store``, ``serving`` and ``jobs`` all import it. Validation collects every
problem at once, each prefixed by its path in the input document (``guardrails[1].metric: unknown metric``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bayesopt.errors import SpecValidationError

SCHEMA_VERSION = 1

#: Experiment, parameter, metric and arm names appear inside Redis keys and URLs.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
PARAMETER_TYPES = ("float", "int")
DIRECTIONS = ("maximize", "minimize")
METRIC_KINDS = ("rate", "mean")

#: One hour: members keep their arm for the hour, as in the LinkedIn feed system.
DEFAULT_STICKINESS_SECONDS = 3600
#: Top of every hour.
DEFAULT_REFIT_CRON = "0 * * * *"


@dataclass(frozen=True)
class Parameter:
    """One tunable knob of the ranker's formula, with inclusive bounds."""

    name: str
    lower: float
    upper: float
    type: str = "float"
    log_scale: bool = False


@dataclass(frozen=True)
class Metric:
    """A measured outcome. ``rate`` metrics are per-session proportions in [0, 1]."""

    name: str
    kind: str = "mean"


@dataclass(frozen=True)
class Objective:
    """A metric to improve."""

    metric: str
    direction: str = "maximize"


@dataclass(frozen=True)
class Guardrail:
    """A metric that must stay within a limit.

    Exactly one of ``lower`` and ``upper`` is set. With ``relative=True`` the limit applies to the relative change
    against control, ``(g(x) - g(control)) / |g(control)|``: ``lower=-0.01`` means "may not drop more than 1%".
    """

    metric: str
    lower: float | None = None
    upper: float | None = None
    relative: bool = False

    @property
    def bound(self) -> float:
        """The limit, whichever side it is on."""
        return self.lower if self.lower is not None else self.upper  # type: ignore[return-value]

    @property
    def is_lower(self) -> bool:
        """True for a floor (``g >= bound``), False for a ceiling."""
        return self.lower is not None


@dataclass(frozen=True)
class Traffic:
    """How traffic is split: ``experiment_share`` of members enter; of those, ``control_share`` stay on control."""

    experiment_share: float = 1.0
    control_share: float = 0.2


@dataclass(frozen=True)
class Refit:
    """When to refit and how much data a refit needs."""

    cron: str = DEFAULT_REFIT_CRON
    min_observations: int = 1


@dataclass(frozen=True)
class PolicySettings:
    """Modelling knobs for the constrained Thompson-sampling policy."""

    max_arms: int = 16
    num_draws: int = 10_000
    num_candidates: int = 1024
    #: Levels per parameter of the lattice every arm lies on, so arms recur across hours.
    grid_levels: int = 33
    #: Size of the initial design launched before any data (control excluded).
    initial_arms: int = 8
    #: Half-width of the initial design's box around control, as a share of each parameter's range.
    initial_radius: float = 0.25
    half_life_hours: float | None = None
    max_unsafe_share: float = 0.05
    #: 0.9, not 0.5: in 48-hour closed loops over 5 seeds, 0.5 let 10% of traffic reach truly guardrail-breaking
    #: arms (bound 5%); 0.9 kept it at 2.4% for the same regret (docs/closed_loop.md).
    feasibility_threshold: float = 0.9
    method: str = "constrained_ts"
    seed: int = 0


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment definition. Build it with :meth:`from_dict`, :meth:`from_file` or :meth:`load`."""

    name: str
    parameters: tuple[Parameter, ...]
    control: Mapping[str, float]
    metrics: tuple[Metric, ...]
    objectives: tuple[Objective, ...]
    guardrails: tuple[Guardrail, ...] = ()
    traffic: Traffic = field(default_factory=Traffic)
    stickiness_seconds: int = DEFAULT_STICKINESS_SECONDS
    refit: Refit = field(default_factory=Refit)
    simulator_metrics: tuple[str, ...] = ()
    policy: PolicySettings = field(default_factory=PolicySettings)
    description: str = ""

    @property
    def parameter_names(self) -> list[str]:
        """Names in the order of the ``d`` input dimensions."""
        return [p.name for p in self.parameters]

    @property
    def metric_names(self) -> list[str]:
        """Names in the order of the ``m`` metrics."""
        return [m.name for m in self.metrics]

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; raises ``KeyError`` if there is none."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document that :meth:`from_dict` reads back to an equal spec."""
        doc = asdict(self)
        doc["control"] = dict(self.control)
        doc["schema_version"] = SCHEMA_VERSION
        return json.loads(json.dumps(doc))  # tuples to lists: the plain JSON shape from_dict reads

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def spec_hash(self) -> str:
        """A stable 16-hex-digit hash of the canonical JSON; equal specs hash equal across processes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ExperimentSpec:
        """Validate ``doc`` and build the spec; raises :class:`SpecValidationError` listing every problem."""
        return _SpecParser(doc).parse()

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        """Parse a JSON document."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecValidationError(f"(document): not valid JSON: {exc}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentSpec:
        """Load a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecValidationError(f"(file) {path}: cannot read: {exc.strerror}") from None
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise SpecValidationError(f"(file) {path}: not valid YAML: {exc}") from None
            return cls.from_dict(doc)
        return cls.from_json(text)

    @classmethod
    def load(cls, source: ExperimentSpec | Mapping[str, Any] | str | Path) -> ExperimentSpec:
        """Accept a spec, a dict, a JSON string or a path to a YAML/JSON file."""
        if isinstance(source, ExperimentSpec):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        if isinstance(source, str) and source.lstrip().startswith("{"):
            return cls.from_json(source)
        return cls.from_file(source)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _SpecParser:
    """Walks a raw document, collecting ``path: problem`` strings instead of stopping at the first."""

    _TOP_LEVEL = {
        "name", "description", "parameters", "control", "metrics", "objectives", "guardrails", "traffic",
        "stickiness_seconds", "refit", "simulator_metrics", "policy", "schema_version",
    }

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def parse(self) -> ExperimentSpec:
        if not isinstance(self.doc, Mapping):
            raise SpecValidationError(f"(document): expected a mapping, got {type(self.doc).__name__}")
        doc = self.doc
        for key in doc:
            if key not in self._TOP_LEVEL:
                self.fail(str(key), f"unknown field (allowed: {', '.join(sorted(self._TOP_LEVEL))})")
        name = self._name(doc.get("name"), "name")
        parameters = self._parameters(doc.get("parameters"))
        metrics = self._metrics(doc.get("metrics"))
        metric_names = {m.name for m in metrics}
        control = self._control(doc.get("control"), parameters)
        objectives = self._objectives(doc.get("objectives"), metric_names)
        guardrails = self._guardrails(doc.get("guardrails", []), metric_names)
        traffic = self._section(doc.get("traffic", {}), "traffic", Traffic)
        refit = self._section(doc.get("refit", {}), "refit", Refit)
        policy = self._section(doc.get("policy", {}), "policy", PolicySettings)
        self._check_traffic(traffic)
        self._check_refit(refit)
        self._check_policy(policy)
        stickiness = doc.get("stickiness_seconds", DEFAULT_STICKINESS_SECONDS)
        if not isinstance(stickiness, int) or isinstance(stickiness, bool) or stickiness < 1:
            self.fail("stickiness_seconds", f"must be a positive integer number of seconds, got {stickiness!r}")
        simulator_metrics = self._simulator_metrics(doc.get("simulator_metrics", []), metric_names)
        description = doc.get("description", "")
        if not isinstance(description, str):
            self.fail("description", "must be a string")
        schema = doc.get("schema_version", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            self.fail("schema_version", f"unsupported version {schema!r} (this build reads {SCHEMA_VERSION})")
        if self.problems:
            raise SpecValidationError(self.problems)
        return ExperimentSpec(
            name=name,
            description=description,
            parameters=tuple(parameters),
            control=control,
            metrics=tuple(metrics),
            objectives=tuple(objectives),
            guardrails=tuple(guardrails),
            traffic=traffic,
            stickiness_seconds=stickiness,
            refit=refit,
            simulator_metrics=tuple(simulator_metrics),
            policy=policy,
        )

    def _name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            self.fail(path, f"must match {NAME_PATTERN.pattern} (letters, digits, '_', '.', '-'), got {value!r}")
            return str(value)
        return value

    def _list(self, value: Any, path: str, *, required: bool = True) -> list[Any]:
        if value is None and not required:
            return []
        if not isinstance(value, (list, tuple)) or (required and not value):
            self.fail(path, "must be a non-empty list" if required else "must be a list")
            return []
        return list(value)

    def _fields(self, item: Any, path: str, allowed: set[str], required: set[str]) -> Mapping[str, Any] | None:
        if not isinstance(item, Mapping):
            self.fail(path, f"expected a mapping, got {type(item).__name__}")
            return None
        for key in item:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(item)):
            self.fail(f"{path}.{key}", "is required")
        return item

    def _parameters(self, raw: Any) -> list[Parameter]:
        out: list[Parameter] = []
        seen: set[str] = set()
        for i, item in enumerate(self._list(raw, "parameters")):
            path = f"parameters[{i}]"
            item = self._fields(item, path, {"name", "type", "lower", "upper", "log_scale"}, {"name", "lower", "upper"})
            if item is None:
                continue
            name = self._name(item.get("name"), f"{path}.name")
            if name in seen:
                self.fail(f"{path}.name", f"duplicate parameter {name!r}")
            seen.add(name)
            ptype = item.get("type", "float")
            if ptype not in PARAMETER_TYPES:
                self.fail(f"{path}.type", f"must be one of {PARAMETER_TYPES}, got {ptype!r}")
            lower, upper = item.get("lower"), item.get("upper")
            ok = True
            for key, value in (("lower", lower), ("upper", upper)):
                if key in item and not _is_number(value):
                    self.fail(f"{path}.{key}", f"must be a finite number, got {value!r}")
                    ok = False
            log_scale = item.get("log_scale", False)
            if not isinstance(log_scale, bool):
                self.fail(f"{path}.log_scale", f"must be true or false, got {log_scale!r}")
                log_scale = False
            if ok and "lower" in item and "upper" in item:
                if lower >= upper:
                    self.fail(f"{path}.upper", f"must be greater than lower ({lower}), got {upper}")
                if log_scale and lower <= 0:
                    self.fail(f"{path}.lower", f"must be positive on a log scale, got {lower}")
                if ptype == "int" and (lower != int(lower) or upper != int(upper)):
                    self.fail(path, "int parameters need integer bounds")
                out.append(Parameter(name, float(lower), float(upper), ptype, log_scale))
        return out

    def _control(self, raw: Any, parameters: list[Parameter]) -> dict[str, float]:
        if not isinstance(raw, Mapping):
            self.fail("control", "must map every parameter to its control value")
            return {}
        names = {p.name for p in parameters}
        for key in raw:
            if key not in names:
                self.fail(f"control.{key}", f"unknown parameter {key!r}")
        control: dict[str, float] = {}
        for p in parameters:
            value = raw.get(p.name)
            if value is None:
                self.fail(f"control.{p.name}", "is required")
            elif not _is_number(value):
                self.fail(f"control.{p.name}", f"must be a finite number, got {value!r}")
            elif not p.lower <= value <= p.upper:
                self.fail(f"control.{p.name}", f"{value} is outside the bounds [{p.lower}, {p.upper}]")
            elif p.type == "int" and value != int(value):
                self.fail(f"control.{p.name}", f"must be an integer, got {value}")
            else:
                control[p.name] = float(value)
        return control

    def _metrics(self, raw: Any) -> list[Metric]:
        out: list[Metric] = []
        for i, item in enumerate(self._list(raw, "metrics")):
            path = f"metrics[{i}]"
            if isinstance(item, str):
                item = {"name": item}
            item = self._fields(item, path, {"name", "kind"}, {"name"})
            if item is None:
                continue
            name = self._name(item.get("name"), f"{path}.name")
            if name in {m.name for m in out}:
                self.fail(f"{path}.name", f"duplicate metric {name!r}")
            kind = item.get("kind", "mean")
            if kind not in METRIC_KINDS:
                self.fail(f"{path}.kind", f"must be one of {METRIC_KINDS}, got {kind!r}")
            out.append(Metric(name, kind))
        return out

    def _metric_ref(self, value: Any, path: str, known: set[str]) -> str:
        if value not in known:
            self.fail(path, f"unknown metric {value!r} (declared: {', '.join(sorted(known)) or 'none'})")
        return str(value)

    def _objectives(self, raw: Any, known: set[str]) -> list[Objective]:
        out: list[Objective] = []
        for i, item in enumerate(self._list(raw, "objectives")):
            path = f"objectives[{i}]"
            item = self._fields(item, path, {"metric", "direction"}, {"metric"})
            if item is None:
                continue
            metric = self._metric_ref(item.get("metric"), f"{path}.metric", known)
            direction = item.get("direction", "maximize")
            if direction not in DIRECTIONS:
                self.fail(f"{path}.direction", f"must be one of {DIRECTIONS}, got {direction!r}")
            out.append(Objective(metric, direction))
        return out

    def _guardrails(self, raw: Any, known: set[str]) -> list[Guardrail]:
        out: list[Guardrail] = []
        for i, item in enumerate(self._list(raw, "guardrails", required=False)):
            path = f"guardrails[{i}]"
            item = self._fields(item, path, {"metric", "lower", "upper", "relative"}, {"metric"})
            if item is None:
                continue
            metric = self._metric_ref(item.get("metric"), f"{path}.metric", known)
            lower, upper = item.get("lower"), item.get("upper")
            if (lower is None) == (upper is None):
                self.fail(path, "set exactly one of 'lower' (a floor) or 'upper' (a ceiling)")
                continue
            limit_key = "lower" if lower is not None else "upper"
            if not _is_number(item[limit_key]):
                self.fail(f"{path}.{limit_key}", f"must be a finite number, got {item[limit_key]!r}")
                continue
            relative = item.get("relative", False)
            if not isinstance(relative, bool):
                self.fail(f"{path}.relative", f"must be true or false, got {relative!r}")
                continue
            out.append(Guardrail(metric, _float_or_none(lower), _float_or_none(upper), relative))
        return out

    def _section(self, raw: Any, path: str, cls: type) -> Any:
        default = cls()
        allowed = set(asdict(default))
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a mapping, got {type(raw).__name__}")
            return default
        values = {}
        for key, value in raw.items():
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
                continue
            expected = getattr(default, key)
            if isinstance(expected, bool) or isinstance(expected, str):
                ok = isinstance(value, type(expected))
            elif isinstance(expected, (int, float)) or expected is None:
                ok = value is None and expected is None or _is_number(value)
                if isinstance(expected, int) and ok and value is not None and value != int(value):
                    ok = False
            else:
                ok = True
            if not ok:
                self.fail(f"{path}.{key}", f"expected {type(expected).__name__ if expected is not None else 'a number'}, got {value!r}")
                continue
            if isinstance(expected, int) and not isinstance(expected, bool) and value is not None:
                value = int(value)
            elif isinstance(expected, float) and value is not None:
                value = float(value)
            values[key] = value
        return cls(**{**asdict(default), **values})

    def _check_traffic(self, t: Traffic) -> None:
        if not 0 < t.experiment_share <= 1:
            self.fail("traffic.experiment_share", f"must be in (0, 1], got {t.experiment_share}")
        if not 0 < t.control_share < 1:
            self.fail("traffic.control_share", f"must be in (0, 1): control is served in every window, got {t.control_share}")

    def _check_refit(self, r: Refit) -> None:
        if len(r.cron.split()) != 5:
            self.fail("refit.cron", f"must be a 5-field cron expression like '0 * * * *', got {r.cron!r}")
        if r.min_observations < 0:
            self.fail("refit.min_observations", f"must be >= 0, got {r.min_observations}")

    def _check_policy(self, p: PolicySettings) -> None:
        positive = ("max_arms", "num_draws", "num_candidates", "initial_arms")
        for key in positive:
            if getattr(p, key) < 1:
                self.fail(f"policy.{key}", f"must be a positive integer, got {getattr(p, key)}")
        if p.max_arms == 1:
            self.fail("policy.max_arms", "must be at least 2: control plus one arm to explore")
        if p.grid_levels < 2:
            self.fail("policy.grid_levels", f"must be at least 2, got {p.grid_levels}")
        if not 0 < p.initial_radius <= 1:
            self.fail("policy.initial_radius", f"must be in (0, 1], got {p.initial_radius}")
        if p.half_life_hours is not None and p.half_life_hours <= 0:
            self.fail("policy.half_life_hours", f"must be positive or null, got {p.half_life_hours}")
        for key in ("max_unsafe_share", "feasibility_threshold"):
            if not 0 <= getattr(p, key) <= 1:
                self.fail(f"policy.{key}", f"must be in [0, 1], got {getattr(p, key)}")
        if p.method not in ("constrained_ts", "utility_ts"):
            self.fail("policy.method", f"must be 'constrained_ts' or 'utility_ts', got {p.method!r}")

    def _simulator_metrics(self, raw: Any, known: set[str]) -> list[str]:
        return [
            self._metric_ref(m, f"simulator_metrics[{i}]", known)
            for i, m in enumerate(self._list(raw, "simulator_metrics", required=False))
        ]


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
