"""Package discovery that pyproject.toml cannot express: the harness lives in the `eval/` folder
but installs under the import name `tuner_eval` (a top-level `eval` would collide with any other
`eval` module or a user's own `eval/` folder). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

HARNESS_DIR, HARNESS_NAME = "eval", "tuner_eval"

harness = [HARNESS_NAME + name[len(HARNESS_DIR):] for name in find_packages(include=[HARNESS_DIR, HARNESS_DIR + ".*"])]
setup(packages=find_packages(include=["tuner", "tuner.*"]) + harness, package_dir={HARNESS_NAME: HARNESS_DIR})
