"""The e2e tests reuse the integration tests' fixtures: the CRD and the operator process."""

from tests.integration.conftest import crd, operator, pytest_runtest_makereport

__all__ = ["crd", "operator", "pytest_runtest_makereport"]
