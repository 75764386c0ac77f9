"""Operating the CLI: the embedded Redis keeps its data across ``bayesopt redis stop``, says when it starts
fresh, masks Redis passwords, and ``serve`` refuses to open unauthenticated writes beyond loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main
from param_store import EmbeddedRedis, ParamStore, mask_url
from tests.factories import spec_dict


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_redis_stop_loses_nothing_and_a_fresh_server_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("BAYESOPT_HOME", str(tmp_path))
    monkeypatch.setenv("BAYESOPT_NAMESPACE", "ops")
    try:
        code, out = _run(capsys, "redis", "start")
        assert code == 0 and "started fresh: no stored data" in out
        spec = tmp_path / "ads.json"
        spec.write_text(json.dumps(spec_dict("ads")))
        assert main(["launch", str(spec)]) == 0
        capsys.readouterr()
        code, out = _run(capsys, "redis", "stop")
        assert code == 0 and "its data is kept" in out
        code, out = _run(capsys, "redis", "start")
        assert code == 0 and "loaded the stored data" in out
        server = EmbeddedRedis(tmp_path / "redis")
        with ParamStore(server.client(), namespace="ops") as store:
            assert store.list_experiments() == ["ads"] and store.current_version("ads") == 1
    finally:
        main(["redis", "stop"])


def test_redis_passwords_are_masked_wherever_printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    url = "rediss://app:s3cr3t-pw@cache.internal:6380/0?ssl_cert_reqs=required"
    monkeypatch.setenv("REDIS_URL", url)
    for args in (["redis", "status"], ["redis", "url"], ["redis", "url", "--json"]):
        code, out = _run(capsys, *args)
        assert code == 0 and "s3cr3t-pw" not in out and "app:***@cache.internal:6380" in out
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url("redis://:pw@[::1]:6379") == "redis://:***@[::1]:6379"


def test_serve_refuses_open_writes_beyond_loopback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                  redis_server: EmbeddedRedis) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    for name in ("BAYESOPT_ADMIN_TOKEN", "BAYESOPT_INGEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--bind", "0.0.0.0:8123"]) == 2
    assert "--allow-open-writes" in capsys.readouterr().err
