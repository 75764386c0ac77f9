"""The simulator's ``bayesopt`` commands (``demo``, ``simulate``, ``bench``).

They reach the CLI through the ``bayesopt.commands`` entry-point group in ``pyproject.toml``, so ``jobs.cli``
never names this package and production commands (``serve``, ``refit``, ``status``...) never import it.
"""
