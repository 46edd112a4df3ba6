"""Load the shared harness for every test in the repository."""

pytest_plugins = ["tests.harness.fixtures"]
