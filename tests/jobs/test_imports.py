"""The job machinery loads no model code until a refit runs, and no Ray unless asked: a replica starts small and fast."""

from __future__ import annotations

import subprocess
import sys

from tests.jobs.procs import ROOT


def test_importing_the_jobs_modules_loads_no_torch_and_no_ray() -> None:
    code = (
        "import sys, jobs.refit, jobs.pool, jobs.executors, jobs.scheduler, jobs.commands.refit, jobs.cli; "
        "print(sorted(m for m in ('torch', 'botorch', 'gpytorch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
