"""Package discovery (all metadata is in pyproject.toml).

Every package under ``subspace_param/`` is found automatically, and the top-level ``kernels/``
folder (with any subpackage it grows) ships as ``subspace_param.kernels``, so a new subpackage can
never be left out of the wheel. ``tests/test_packaging.py`` checks the built wheel against the tree.
"""

from setuptools import find_packages, setup

KERNELS = "subspace_param.kernels"
packages = find_packages(include=["subspace_param", "subspace_param.*"])
packages += [KERNELS] + [f"{KERNELS}.{name}" for name in find_packages(where="kernels")]

setup(packages=packages, package_dir={KERNELS: "kernels"})
