"""The experiment spec: what to tune, what to improve, what must not fall.

A light record (no torch): ``param_store``, ``serving`` and ``jobs`` all import it. Every record validates itself
when it is built (``__post_init__``), so neither :meth:`ExperimentSpec.from_dict` nor ``dataclasses.replace``
can make an invalid one. Validation collects every problem at once, each prefixed by its path in the input
document (``guardrails[1].metric: unknown metric``); a section built on its own uses its section name
(``policy.num_draws``, ``guardrail.lower``).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from bayesopt.cron import cron_problems
from bayesopt.errors import SpecValidationError

SCHEMA_VERSION = 1

#: Experiment, parameter, metric and arm names appear inside Redis keys and URLs. Anchored with ``\A``/``\Z``
#: (not ``^``/``$``, which let a trailing newline through), so ``match`` and ``fullmatch`` agree.
NAME_PATTERN = re.compile(r"\A[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter"
PARAMETER_TYPES = ("float", "int")
DIRECTIONS = ("maximize", "minimize")
METRIC_KINDS = ("rate", "mean")
#: Values of ``policy.method``; ``bayesopt.policy`` stamps the one it ran as the distribution's ``diagnostics["kind"]``.
POLICY_METHODS = ("constrained_ts", "utility_ts")

#: One hour: members keep their arm for the hour, as in the LinkedIn feed system.
DEFAULT_STICKINESS_SECONDS = 3600
#: Top of every hour.
DEFAULT_REFIT_CRON = "0 * * * *"

# Bounds on the spec. Each keeps one refit (fit, candidates, draws) of one experiment within minutes on two
# cores, so an hourly refit of several experiments stays feasible; a value past a bound is refused at
# construction, never truncated later.

#: Parameters: every lattice arm id (``g<i>-<j>-...``, see :mod:`bayesopt.lattice`) must fit a 64-character
#: name, and at :data:`MAX_GRID_LEVELS` an index takes 4 digits plus a separator: ``1 + 12 * 5 - 1 = 60``.
MAX_PARAMETERS = 12
#: Metrics: each modelled metric is one GP fit and one joint sampler per refit, so the refit grows with their number.
MAX_METRICS = 16
#: Arms served at once (control included): every version stores per-arm diagnostics, the sticky assignment
#: scans the arms, and each arm needs its own share of traffic to learn from (at 5,000 members an hour, 256
#: arms get about 20 each).
MAX_ARMS = 256
#: Thompson draws per refit: the served weights are win frequencies, and at 100,000 draws their standard error
#: is under 0.002 for any arm; more draws cost time and change no served weight that matters.
MAX_DRAWS = 100_000
#: Candidates per refit: the pathwise sampler holds an ``N x 1,024`` block of random features per metric
#: (128 MiB in float64 at 16,384), and the exact one an ``N x N`` covariance when ``N`` is small enough to pick it.
MAX_CANDIDATES = 16_384
#: Bound on ``num_draws * num_candidates``, the sampling work of a refit (it grows with the product per metric).
#: DESIGN.md ("Known pitfalls") has 4,096 candidates x 10,000 draws over 3 metrics at about 80 s on 2 cores;
#: ``2**28`` is 6.5 times that product, and 26 times the default (1,024 x 10,000).
MAX_SAMPLING_WORK = 2**28
#: Lattice levels per parameter: 1,025 puts neighbouring arms 0.1% of the range apart, finer than an hour of
#: traffic can tell apart, and keeps arm ids short (see :data:`MAX_PARAMETERS`).
MAX_GRID_LEVELS = 1025
#: Seeds feed numpy, scipy's Sobol sampler and torch; ``[0, 2**31 - 1]`` is what all of them accept, and the
#: refit derives its per-period seeds modulo ``2**31 - 1``.
MAX_SEED = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def _name_problem(path: str, value: Any) -> str:
    return f"{path}: must be a name of {NAME_RULE}, got {value!r}"


def _int_problem(path: str, value: Any, low: int, high: int | None = None, why: str = "") -> str | None:
    """A problem unless ``value`` is an integer in ``[low, high]`` (no upper end when ``high`` is None)."""
    if _is_int(value) and low <= value and (high is None or value <= high):
        return None
    wanted = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    return f"{path}: must be {wanted}{f' ({why})' if why else ''}, got {value!r}"


#: Problems are listed in this order of the document's top-level fields (unknown fields first).
_FIELD_ORDER = (
    "name", "parameters", "metrics", "control", "objectives", "guardrails", "traffic", "refit", "policy",
    "stickiness_seconds", "simulator_metrics", "description", "schema_version",
)


def _in_document_order(problems: list[str]) -> list[str]:
    def rank(problem: str) -> int:
        key = re.split(r"[.\[:]", problem, maxsplit=1)[0]
        return _FIELD_ORDER.index(key) if key in _FIELD_ORDER else -1

    return sorted(problems, key=rank)


def _check(problems: list[str]) -> None:
    if problems:
        raise SpecValidationError(_in_document_order(problems))


def _set(record: Any, **values: Any) -> None:
    """Store normalised values on a frozen record (numpy scalars to plain Python, ints to floats, lists to tuples)."""
    for key, value in values.items():
        object.__setattr__(record, key, value)


@dataclass(frozen=True)
class Parameter:
    """One tunable knob of the ranker's formula, with inclusive bounds."""

    name: str
    lower: float
    upper: float
    type: str = "float"
    log_scale: bool = False

    PATH: ClassVar[str] = "parameter"

    def __post_init__(self) -> None:
        path, out = self.PATH, []
        if not _is_name(self.name):
            out.append(_name_problem(f"{path}.name", self.name))
        if self.type not in PARAMETER_TYPES:
            out.append(f"{path}.type: must be one of {PARAMETER_TYPES}, got {self.type!r}")
        if not isinstance(self.log_scale, bool):
            out.append(f"{path}.log_scale: must be true or false, got {self.log_scale!r}")
        bounds_ok = True
        for key in ("lower", "upper"):
            if not _is_number(getattr(self, key)):
                out.append(f"{path}.{key}: must be a finite number, got {getattr(self, key)!r}")
                bounds_ok = False
        if bounds_ok:
            lower, upper = float(self.lower), float(self.upper)
            if lower >= upper:
                out.append(f"{path}.upper: must be greater than lower ({lower}), got {upper}")
            elif not math.isfinite(upper - lower):
                out.append(f"{path}: the range [{lower}, {upper}] is too wide to represent; rescale the parameter")
            if self.log_scale is True and lower <= 0:
                out.append(f"{path}.lower: must be positive on a log scale, got {lower}")
            if self.type == "int" and (lower != int(lower) or upper != int(upper)):
                out.append(f"{path}: int parameters need integer bounds, got [{lower}, {upper}]")
        _check(out)
        _set(self, lower=float(self.lower), upper=float(self.upper))


@dataclass(frozen=True)
class Metric:
    """A measured outcome. ``rate`` metrics are per-session proportions in [0, 1]."""

    name: str
    kind: str = "mean"

    PATH: ClassVar[str] = "metric"

    def __post_init__(self) -> None:
        out = []
        if not _is_name(self.name):
            out.append(_name_problem(f"{self.PATH}.name", self.name))
        if self.kind not in METRIC_KINDS:
            out.append(f"{self.PATH}.kind: must be one of {METRIC_KINDS}, got {self.kind!r}")
        _check(out)


@dataclass(frozen=True)
class Objective:
    """A metric to improve."""

    metric: str
    direction: str = "maximize"

    PATH: ClassVar[str] = "objective"

    def __post_init__(self) -> None:
        out = []
        if not _is_name(self.metric):
            out.append(_name_problem(f"{self.PATH}.metric", self.metric))
        if self.direction not in DIRECTIONS:
            out.append(f"{self.PATH}.direction: must be one of {DIRECTIONS}, got {self.direction!r}")
        _check(out)


@dataclass(frozen=True)
class Guardrail:
    """A metric that must stay within a limit.

    Exactly one of ``lower`` and ``upper`` is set. With ``relative=True`` the limit applies to the relative change
    against control, ``(g(x) - g(control)) / |g(control)|``, as a fraction in (-1, 1): ``lower=-0.01`` means "may
    not drop more than 1%".
    """

    metric: str
    lower: float | None = None
    upper: float | None = None
    relative: bool = False

    PATH: ClassVar[str] = "guardrail"

    def __post_init__(self) -> None:
        path, out = self.PATH, []
        if not _is_name(self.metric):
            out.append(_name_problem(f"{path}.metric", self.metric))
        if not isinstance(self.relative, bool):
            out.append(f"{path}.relative: must be true or false, got {self.relative!r}")
        if (self.lower is None) == (self.upper is None):
            out.append(f"{path}: set exactly one of 'lower' (a floor) or 'upper' (a ceiling)")
        else:
            key = "lower" if self.lower is not None else "upper"
            limit = getattr(self, key)
            if not _is_number(limit):
                out.append(f"{path}.{key}: must be a finite number, got {limit!r}")
            elif self.relative is True and not -1 < limit < 1:
                out.append(
                    f"{path}.{key}: {limit:g} is a relative change of {limit * 100:+g}%; relative limits are "
                    f"fractions in (-1, 1): for {limit:+g}% write {limit / 100:g}"
                )
        _check(out)
        _set(self, lower=_float_or_none(self.lower), upper=_float_or_none(self.upper))

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

    PATH: ClassVar[str] = "traffic"

    def __post_init__(self) -> None:
        out = []
        if not (_is_number(self.experiment_share) and 0 < self.experiment_share <= 1):
            out.append(f"{self.PATH}.experiment_share: must be in (0, 1], got {self.experiment_share!r}")
        if not (_is_number(self.control_share) and 0 < self.control_share < 1):
            out.append(f"{self.PATH}.control_share: must be in (0, 1): control is served in every window, "
                       f"got {self.control_share!r}")
        _check(out)
        _set(self, experiment_share=float(self.experiment_share), control_share=float(self.control_share))


@dataclass(frozen=True)
class Refit:
    """When to refit (a five-field crontab expression, read in UTC) and how much data a refit needs."""

    cron: str = DEFAULT_REFIT_CRON
    min_observations: int = 1

    PATH: ClassVar[str] = "refit"

    def __post_init__(self) -> None:
        out = [f"{self.PATH}.cron: {p}" if p.startswith("must") else f"{self.PATH}.cron: {self.cron!r}: {p}"
               for p in cron_problems(self.cron)]
        problem = _int_problem(f"{self.PATH}.min_observations", self.min_observations, 0)
        out += [problem] if problem else []
        _check(out)
        _set(self, min_observations=int(self.min_observations))


@dataclass(frozen=True)
class PolicySettings:
    """Modelling knobs for the constrained Thompson-sampling policy; bounds are the ``MAX_*`` constants above."""

    max_arms: int = 16
    num_draws: int = 10_000
    num_candidates: int = 1024
    #: Levels per parameter of the lattice every arm lies on, so arms recur across hours.
    grid_levels: int = 33
    #: Size of the initial design launched before any data (control excluded), at most ``max_arms - 1``.
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

    PATH: ClassVar[str] = "policy"

    def __post_init__(self) -> None:
        path = self.PATH
        checks = [
            _int_problem(f"{path}.max_arms", self.max_arms, 2, MAX_ARMS, "control plus at least one arm"),
            _int_problem(f"{path}.num_draws", self.num_draws, 1, MAX_DRAWS,
                         "more draws cost refit time and change no served weight that matters"),
            _int_problem(f"{path}.num_candidates", self.num_candidates, 2, MAX_CANDIDATES,
                         "control plus at least one; more would not fit a refit's memory"),
            _int_problem(f"{path}.grid_levels", self.grid_levels, 2, MAX_GRID_LEVELS,
                         "finer levels than an hour of traffic can tell apart"),
            _int_problem(f"{path}.seed", self.seed, 0, MAX_SEED, "the range numpy, scipy and torch all accept"),
        ]
        out = [c for c in checks if c]
        if _is_int(self.max_arms) and 2 <= self.max_arms <= MAX_ARMS:
            problem = _int_problem(f"{path}.initial_arms", self.initial_arms, 1, self.max_arms - 1,
                                   "the launch design serves them next to control, within max_arms")
        else:
            problem = _int_problem(f"{path}.initial_arms", self.initial_arms, 1, MAX_ARMS - 1)
        out += [problem] if problem else []
        if not out and self.num_draws * self.num_candidates > MAX_SAMPLING_WORK:
            out.append(
                f"{path}.num_draws: {self.num_draws} draws over {self.num_candidates} candidates is "
                f"{self.num_draws * self.num_candidates} draw-candidate pairs, above the {MAX_SAMPLING_WORK} a refit "
                f"can afford; use at most {MAX_SAMPLING_WORK // self.num_candidates} draws or fewer candidates"
            )
        if not (_is_number(self.initial_radius) and 0 < self.initial_radius <= 1):
            out.append(f"{path}.initial_radius: must be in (0, 1] (a share of each parameter's range), "
                       f"got {self.initial_radius!r}")
        if self.half_life_hours is not None and not (_is_number(self.half_life_hours) and self.half_life_hours > 0):
            out.append(f"{path}.half_life_hours: must be a positive number of hours or null, got {self.half_life_hours!r}")
        for key in ("max_unsafe_share", "feasibility_threshold"):
            value = getattr(self, key)
            if not (_is_number(value) and 0 <= value <= 1):
                out.append(f"{path}.{key}: must be in [0, 1], got {value!r}")
        if self.method not in POLICY_METHODS:
            out.append(f"{path}.method: must be one of {POLICY_METHODS}, got {self.method!r}")
        _check(out)
        _set(
            self, **{k: int(getattr(self, k)) for k in ("max_arms", "num_draws", "num_candidates", "grid_levels",
                                                        "initial_arms", "seed")},
            **{k: float(getattr(self, k)) for k in ("initial_radius", "max_unsafe_share", "feasibility_threshold")},
            half_life_hours=_float_or_none(self.half_life_hours),
        )


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment definition. Build it with :meth:`from_dict`, :meth:`from_file` or :meth:`load`.

    Direct construction (and ``dataclasses.replace``) validates too; sequences become tuples and ``control``
    a dict of floats in parameter order.
    """

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

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        _check(_spec_problems(values))
        _set(self, **_normalized(values))

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


_SEQUENCES = {
    "parameters": Parameter, "metrics": Metric, "objectives": Objective, "guardrails": Guardrail,
    "simulator_metrics": str,
}
_SECTIONS = {"traffic": Traffic, "refit": Refit, "policy": PolicySettings}


def _spec_problems(values: Mapping[str, Any], unresolved: frozenset[str] | None = None) -> list[str]:
    """What is wrong with a spec's fields, beyond what each record checks of itself.

    ``unresolved`` is given by the parser when it has reported problems of its own already: the names of
    parameters and metrics whose records failed, so references to them are not reported again as unknown
    (nor empty lists whose items all failed).
    """
    partial = unresolved is not None
    unresolved = unresolved or frozenset()
    out: list[str] = []
    if not _is_name(values["name"]):
        out.append(_name_problem("name", values["name"]))
    if not isinstance(values["description"], str):
        out.append(f"description: must be a string, got {type(values['description']).__name__}")
    if _int_problem("stickiness_seconds", values["stickiness_seconds"], 1) is not None:
        out.append(f"stickiness_seconds: must be a positive integer number of seconds, got {values['stickiness_seconds']!r}")
    for key, cls in _SECTIONS.items():
        if not isinstance(values[key], cls):
            out.append(f"{key}: expected a {cls.__name__}, got {type(values[key]).__name__}")
    items: dict[str, list[Any]] = {}
    for key, cls in _SEQUENCES.items():
        raw = values[key]
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, (list, tuple)):
            out.append(f"{key}: must be a list, got {type(raw).__name__}")
            raw = ()
        items[key] = [v for v in raw if isinstance(v, cls)]
        for i, v in enumerate(raw):
            if not isinstance(v, cls) and cls is not str:
                out.append(f"{key}[{i}]: expected a {cls.__name__}, got {type(v).__name__}")
    for key in ("parameters", "metrics", "objectives"):
        if not values[key] and not partial:
            out.append(f"{key}: must be a non-empty list")
    for key, limit in (("parameters", MAX_PARAMETERS), ("metrics", MAX_METRICS)):
        if len(values[key]) > limit:
            out.append(f"{key}: {len(values[key])} {key} exceed the limit of {limit} (see bayesopt.spec.MAX_{key.upper()})")
    out += _duplicates("parameters", "parameter", [p.name for p in items["parameters"]])
    out += _duplicates("metrics", "metric", [m.name for m in items["metrics"]])
    out += _control_problems(values["control"], items["parameters"], unresolved)
    known = {m.name for m in items["metrics"]}

    def ref(path: str, metric: Any) -> None:
        if metric not in known and metric not in unresolved:
            out.append(f"{path}: unknown metric {metric!r} (declared: {', '.join(sorted(known)) or 'none'})")

    for i, o in enumerate(values["objectives"]):
        if isinstance(o, Objective):
            ref(f"objectives[{i}].metric", o.metric)
    for i, g in enumerate(values["guardrails"]):
        if isinstance(g, Guardrail):
            ref(f"guardrails[{i}].metric", g.metric)
    for i, m in enumerate(values["simulator_metrics"]):
        ref(f"simulator_metrics[{i}]", m)
    return out


def _duplicates(key: str, what: str, names: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name in seen:
            out.append(f"{key}[{i}].name: duplicate {what} {name!r}")
        seen.add(name)
    return out


def _control_problems(control: Any, parameters: list[Parameter], unresolved: frozenset[str]) -> list[str]:
    if not isinstance(control, Mapping):
        return ["control: must map every parameter to its control value"]
    names = {p.name for p in parameters}
    out = [f"control.{key}: unknown parameter {key!r}" for key in control if key not in names and key not in unresolved]
    for p in parameters:
        value = control.get(p.name)
        if value is None:
            out.append(f"control.{p.name}: is required")
        elif not _is_number(value):
            out.append(f"control.{p.name}: must be a finite number, got {value!r}")
        elif not p.lower <= value <= p.upper:
            out.append(f"control.{p.name}: {value} is outside the bounds [{p.lower}, {p.upper}]")
        elif p.type == "int" and value != int(value):
            out.append(f"control.{p.name}: must be an integer, got {value}")
    return out


def _normalized(values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a valid spec in their stored form: tuples, a plain ``control`` dict, a plain int."""
    out = {key: tuple(values[key]) for key in _SEQUENCES}
    out["control"] = {p.name: float(values["control"][p.name]) for p in out["parameters"]}
    out["stickiness_seconds"] = int(values["stickiness_seconds"])
    return out


class _SpecParser:
    """Reads a raw document into records, collecting ``path: problem`` strings instead of stopping at the first.

    It checks the document's shape (mappings, lists, known and required keys); the records check the values.
    """

    _TOP_LEVEL = {
        "name", "description", "parameters", "control", "metrics", "objectives", "guardrails", "traffic",
        "stickiness_seconds", "refit", "simulator_metrics", "policy", "schema_version",
    }

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.problems: list[str] = []
        self.unresolved: set[str] = set()  # names of parameters and metrics whose records failed

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def parse(self) -> ExperimentSpec:
        if not isinstance(self.doc, Mapping):
            raise SpecValidationError(f"(document): expected a mapping, got {type(self.doc).__name__}")
        doc = self.doc
        for key in doc:
            if key not in self._TOP_LEVEL:
                self.fail(str(key), f"unknown field (allowed: {', '.join(sorted(self._TOP_LEVEL))})")
        schema = doc.get("schema_version", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            self.fail("schema_version", f"unsupported version {schema!r} (this build reads {SCHEMA_VERSION})")
        values = {
            "name": doc.get("name"),
            "description": doc.get("description", ""),
            "parameters": self._items(doc.get("parameters"), "parameters", Parameter, self._parameter),
            "control": doc.get("control"),
            "metrics": self._items(doc.get("metrics"), "metrics", Metric, self._metric),
            "objectives": self._items(doc.get("objectives"), "objectives", Objective, self._objective),
            "guardrails": self._items(doc.get("guardrails", []), "guardrails", Guardrail, self._guardrail, required=False),
            "traffic": self._section(doc.get("traffic", {}), "traffic", Traffic),
            "stickiness_seconds": doc.get("stickiness_seconds", DEFAULT_STICKINESS_SECONDS),
            "refit": self._section(doc.get("refit", {}), "refit", Refit),
            "simulator_metrics": tuple(self._list(doc.get("simulator_metrics", []), "simulator_metrics", required=False)),
            "policy": self._section(doc.get("policy", {}), "policy", PolicySettings),
        }
        if self.problems:
            resolvable = {k: (v if v is not None else _SECTIONS[k]()) if k in _SECTIONS else v for k, v in values.items()}
            more = _spec_problems(resolvable, frozenset(self.unresolved))
            _check(self.problems + [p for p in more if p not in self.problems])
        return ExperimentSpec(**values)

    def _build(self, cls: type, path: str, **kwargs: Any) -> Any:
        """``cls(**kwargs)``, or None after recording its problems under ``path`` instead of ``cls.PATH``."""
        try:
            return cls(**kwargs)
        except SpecValidationError as exc:
            self.problems += [path + p[len(cls.PATH):] if p.startswith(cls.PATH) else p for p in exc.problems]
            return None

    def _list(self, value: Any, path: str, *, required: bool = True) -> list[Any]:
        if value is None and not required:
            return []
        if not isinstance(value, (list, tuple)) or (required and not value):
            self.fail(path, "must be a non-empty list" if required else "must be a list")
            return []
        return list(value)

    def _items(self, raw: Any, path: str, cls: type, build: Any, *, required: bool = True) -> tuple[Any, ...]:
        out = []
        for i, item in enumerate(self._list(raw, path, required=required)):
            record = build(item, f"{path}[{i}]")
            if record is not None:
                out.append(record)
            elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                self.unresolved.add(item["name"])
        return tuple(out)

    def _fields(self, item: Any, path: str, allowed: set[str], required: set[str]) -> Mapping[str, Any] | None:
        if not isinstance(item, Mapping):
            self.fail(path, f"expected a mapping, got {type(item).__name__}")
            return None
        ok = True
        for key in item:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
                ok = False
        for key in sorted(required - set(item)):
            self.fail(f"{path}.{key}", "is required")
            ok = False
        return item if ok else None

    def _parameter(self, item: Any, path: str) -> Parameter | None:
        fields_ = self._fields(item, path, {"name", "type", "lower", "upper", "log_scale"}, {"name", "lower", "upper"})
        return None if fields_ is None else self._build(Parameter, path, **fields_)

    def _metric(self, item: Any, path: str) -> Metric | None:
        fields_ = self._fields({"name": item} if isinstance(item, str) else item, path, {"name", "kind"}, {"name"})
        return None if fields_ is None else self._build(Metric, path, **fields_)

    def _objective(self, item: Any, path: str) -> Objective | None:
        fields_ = self._fields(item, path, {"metric", "direction"}, {"metric"})
        return None if fields_ is None else self._build(Objective, path, **fields_)

    def _guardrail(self, item: Any, path: str) -> Guardrail | None:
        fields_ = self._fields(item, path, {"metric", "lower", "upper", "relative"}, {"metric"})
        return None if fields_ is None else self._build(Guardrail, path, **fields_)

    def _section(self, raw: Any, path: str, cls: type) -> Any:
        """A section record from its mapping; integral numbers (JSON ``1e4``) become ints where ints are wanted."""
        default = cls()
        allowed = set(asdict(default))
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a mapping, got {type(raw).__name__}")
            return None
        values = {}
        for key, value in raw.items():
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
                continue
            expected = getattr(default, key)
            if _is_int(expected) and isinstance(value, float) and value.is_integer():
                value = int(value)
            elif isinstance(expected, float) and _is_int(value):
                value = float(value)
            values[key] = value
        return self._build(cls, path, **values)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
