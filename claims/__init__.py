"""The claims of claimlens, one file per family: ``pytest claims/`` in a clone, ``pytest --pyargs claimlens.claims``
where claimlens is installed (this folder is the package ``claimlens.claims`` in the wheel)."""
