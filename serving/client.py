"""A Python client for rankers: the HTTP API with timeouts and bounded retries, or in-process draws.

Retry policy (explicit, never for a 4xx): reads (GETs and the read-only batch POST) are retried on connection
errors, timeouts and 500/502/503/504; writes (observations, admin) only when the request provably never left
(connection refused, connect timeout), because a retried write could be counted twice.

Local mode (:meth:`ServingClient.local`) fetches the experiment's snapshot once per change (a conditional GET
with the ETag every ``refresh_s``) and draws with :class:`serving.assignment.ServingSnapshot`, the very code the
server runs, so for the same member and time it returns exactly the server's answer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from serving.assignment import Assignment, ServingSnapshot, canonical_member_id
from serving.errors import ServingHTTPError, ServingUnavailableClientError

log = logging.getLogger(__name__)

#: (connect, read) seconds: a ranker would rather fall back to control than wait.
DEFAULT_TIMEOUT_S = (0.5, 2.0)
#: How often a local assigner asks whether the snapshot changed (a 304 when it did not).
DEFAULT_REFRESH_S = 5.0
RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, sleeping ``backoff_s * 2**i`` (capped at ``max_backoff_s``) between them."""

    attempts: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts: must be at least 1, got {self.attempts}")

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2**attempt))


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (safe to retry even a write)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _http_error(response: requests.Response) -> ServingHTTPError:
    try:
        error = response.json()["error"]
        return ServingHTTPError(response.status_code, str(error["code"]), str(error["message"]), error.get("problems"))
    except (ValueError, KeyError, TypeError):
        return ServingHTTPError(response.status_code, "http_error", response.text[:200])


class ServingClient:
    """HTTP client of one serving deployment (thread-safe as far as ``requests.Session`` is)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),
        admin_token: str | None = None,
        ingest_token: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry
        self.admin_token = admin_token
        self.ingest_token = ingest_token
        self.session = session or requests.Session()

    # -- transport ------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, idempotent: bool, ok: Sequence[int] = (200,), token: str | None = None,
                **kwargs: Any) -> requests.Response:
        """Send with the retry policy; return a response whose status is in ``ok`` or raise.

        ``token`` is the bearer token to send (default: the admin token, if any).
        """
        headers = dict(kwargs.pop("headers", None) or {})
        token = token or self.admin_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.base_url + path
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                time.sleep(self.retry.delay(attempt - 1))
            try:
                response = self.session.request(method, url, timeout=self.timeout_s, headers=headers, **kwargs)
            except requests.RequestException as exc:
                last = exc
                if idempotent or _never_sent(exc):
                    continue
                raise ServingUnavailableClientError(f"{method} {path}: {exc} (a write; not retried)") from exc
            if response.status_code in ok:
                return response
            error = _http_error(response)
            if idempotent and response.status_code in RETRY_STATUSES:
                last = error
                continue
            raise error
        raise ServingUnavailableClientError(f"{method} {path}: no answer after {self.retry.attempts} attempts: {last}")

    # -- ranker calls ---------------------------------------------------------------------------------------
    def params(self, experiment: str, member_id: str | int, *, at: float | None = None) -> Assignment:
        query: dict[str, Any] = {"member_id": canonical_member_id(member_id)}
        if at is not None:
            query["at"] = repr(float(at))
        doc = self.request("GET", f"/v1/experiments/{experiment}/params", idempotent=True, params=query).json()
        return Assignment(doc["experiment"], doc["member_id"], doc["version"], doc["arm_id"], doc["values"],
                          doc["propensity"], doc["in_experiment"], doc["on_control"])

    def params_batch(self, experiment: str, member_ids: Iterable[str | int], *, at: float | None = None) -> list[Assignment]:
        body: dict[str, Any] = {"member_ids": [canonical_member_id(m) for m in member_ids]}
        if at is not None:
            body["at"] = float(at)
        doc = self.request("POST", f"/v1/experiments/{experiment}/params/batch", idempotent=True, json=body).json()
        v = doc["version"]
        return [Assignment(experiment, a["member_id"], v, a["arm_id"], a["values"], a["propensity"], a["in_experiment"],
                           a["on_control"]) for a in doc["assignments"]]

    def snapshot(self, experiment: str, *, etag: str | None = None) -> tuple[ServingSnapshot | None, str | None]:
        """The experiment's snapshot and its ETag; ``(None, etag)`` when ``etag`` still matches (HTTP 304)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self.request("GET", f"/v1/experiments/{experiment}/distribution", idempotent=True, ok=(200, 304), headers=headers)
        if response.status_code == 304:
            return None, etag
        return ServingSnapshot.from_dict(response.json()), response.headers.get("ETag")

    def distribution(self, experiment: str) -> dict[str, Any]:
        """The current distribution document (``ParameterDistribution.to_dict()``)."""
        return self.request("GET", f"/v1/experiments/{experiment}/distribution", idempotent=True).json()["distribution"]

    def post_observations(self, experiment: str, rows: Sequence[Mapping[str, Any]], *, batch_id: str | None = None) -> int:
        """Store observation rows (all or none, exactly once); returns how many were accepted.

        The batch carries an ``Idempotency-Key`` (``batch_id``, default a fresh random one), so the client may
        retry a batch whose answer was lost: the server stores it once.
        """
        headers = {"Idempotency-Key": batch_id or uuid.uuid4().hex}
        response = self.request("POST", f"/v1/experiments/{experiment}/observations", idempotent=True, ok=(200, 201),
                                token=self.ingest_token, headers=headers, json={"rows": list(rows)})
        return int(response.json()["accepted"])

    def local(self, experiment: str, *, refresh_s: float = DEFAULT_REFRESH_S) -> LocalAssigner:
        """An in-process assigner that draws exactly as the server does."""
        return LocalAssigner(self, experiment, refresh_s=refresh_s)

    # -- status and admin -----------------------------------------------------------------------------------
    def experiments(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/experiments", idempotent=True).json()["experiments"]

    def status(self, experiment: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/experiments/{experiment}", idempotent=True).json()

    def launch(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/v1/experiments", idempotent=False, ok=(201,), json=dict(spec)).json()

    def pause(self, experiment: str) -> str:
        return self._admin(experiment, "pause")["state"]

    def resume(self, experiment: str) -> str:
        return self._admin(experiment, "resume")["state"]

    def end(self, experiment: str) -> str:
        return self._admin(experiment, "end")["state"]

    def rollback(self, experiment: str, version: int) -> int:
        return int(self._admin(experiment, "rollback", {"version": version})["version"])

    def _admin(self, experiment: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", f"/v1/experiments/{experiment}/{action}", idempotent=False, json=body or {}).json()

    def ready(self) -> bool:
        try:
            self.request("GET", "/v1/ready", idempotent=True)
        except (ServingHTTPError, ServingUnavailableClientError):
            return False
        return True


class LocalAssigner:
    """Draws in-process from a snapshot refreshed at most every ``refresh_s`` (kept on refresh failures)."""

    def __init__(self, client: ServingClient, experiment: str, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self.client = client
        self.experiment = experiment
        self.refresh_s = refresh_s
        self._snapshot: ServingSnapshot | None = None
        self._etag: str | None = None
        self._next_check = 0.0

    def snapshot(self) -> ServingSnapshot:
        """The snapshot in use, refreshed if due; raises only if none was ever fetched."""
        if time.monotonic() >= self._next_check:
            self.refresh()
        assert self._snapshot is not None
        return self._snapshot

    def refresh(self) -> None:
        try:
            snapshot, etag = self.client.snapshot(self.experiment, etag=self._etag if self._snapshot else None)
        except (ServingHTTPError, ServingUnavailableClientError):
            if self._snapshot is None:
                raise
            log.warning("snapshot refresh of %s failed; drawing from version %s", self.experiment, self._snapshot.current_version)
        else:
            if snapshot is not None:
                self._snapshot, self._etag = snapshot, etag
        self._next_check = time.monotonic() + self.refresh_s

    def assign(self, member_id: str | int, *, at: float | None = None) -> Assignment:
        return self.snapshot().assign(canonical_member_id(member_id), time.time() if at is None else at)

    def assign_many(self, member_ids: Iterable[str | int], *, at: float | None = None) -> list[Assignment]:
        ids = [canonical_member_id(m) for m in member_ids]
        return self.snapshot().assign_many(ids, time.time() if at is None else at)
