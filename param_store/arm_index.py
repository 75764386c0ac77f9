"""The arm-values index: arm id -> the parameter values it was served with, one hash per experiment.

A refit needs the values of every arm it has statistics for. Reading them from the versions they were served
in costs one parse per stored version, which grows with every hourly window; the index is one ``HMGET`` of the
arms asked for. Each field's value is ``"<version>|<values JSON>"``: the index keeps the newest version that
served the arm (arm ids name lattice points, so every version gives the same values; the version only makes
concurrent and out-of-order writers agree). It is written in the same server-side step as the version record
(``param_store.scripts.WRITE_VERSION`` and ``LAUNCH``) and backfilled for experiments stored before it existed.
"""

from __future__ import annotations

import json

from bayesopt.distribution import ParameterDistribution

SEP = "|"


def script_args(dists: list[ParameterDistribution]) -> list[str | int]:
    """``ARGV`` triples (version, arm id, values JSON) of every arm of ``dists``, for the merge in the scripts."""
    out: list[str | int] = []
    for dist in dists:
        for arm in dist.arms:
            out += [dist.version, arm.arm_id, json.dumps(dict(arm.values), sort_keys=True, allow_nan=False)]
    return out


def decode(arm_ids: list[str], raws: list[bytes | None]) -> dict[str, dict[str, float]]:
    """The values of each of ``arm_ids`` whose index entry ``raws`` holds (entries that are None are left out)."""
    out: dict[str, dict[str, float]] = {}
    for arm_id, raw in zip(arm_ids, raws, strict=True):
        if raw is not None:
            _, values = raw.decode().split(SEP, 1)
            out[arm_id] = {k: float(v) for k, v in json.loads(values).items()}
    return out
