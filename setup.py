"""The one thing pyproject.toml cannot say: the repository's top-level ``claims/`` and ``fixtures/`` mapped into the
package (``claimlens.claims``, ``claimlens/fixtures``), so that the wheel carries the claim suite and the built-in
specs (``pytest --pyargs claimlens.claims``) while a clone keeps them where they are (``pytest claims/``).

Everything else is in pyproject.toml. The folders of data under ``src/claimlens`` (``reference/nanda2022``, …) are
listed as packages too (namespace packages: setuptools ships data by package), their files chosen in
``[tool.setuptools.package-data]``."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages("src", include=["claimlens*"], exclude=["*__pycache__*"]),
              "claimlens.claims", "claimlens.fixtures", "claimlens.fixtures.sweeps"],
    package_dir={"": "src", "claimlens.claims": "claims", "claimlens.fixtures": "fixtures",
                 "claimlens.fixtures.sweeps": "fixtures/sweeps"},
)
