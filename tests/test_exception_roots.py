"""Every public exception a package defines derives from that package's root, so callers can catch one class."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.test_import_boundaries import modules_of

ROOTS = {
    "bayesopt": ("bayesopt.errors", "BayesoptError"),
    "param_store": ("param_store.errors", "StoreError"),
    "serving": ("serving.errors", "ServingError"),
    "jobs": ("jobs.errors", "JobsError"),
}


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_public_exception_derives_from_the_package_root(package: str) -> None:
    module_name, root_name = ROOTS[package]
    root = getattr(importlib.import_module(module_name), root_name)
    found = {}
    for name in modules_of(package):
        if name.rsplit(".", 1)[-1] in {"wsgi"}:
            continue  # builds an app (and reads the environment) at import
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name and not attr.startswith("_"):
                found[f"{name}.{attr}"] = obj
    assert found, f"no exceptions found in {package}"
    strays = sorted(k for k, cls in found.items() if not issubclass(cls, root))
    assert not strays, f"not derived from {root_name}: {strays}"
