"""Test-suite wiring: the real local control plane and Kafka fixtures (see tailor_localenv)."""

pytest_plugins = ["tailor_localenv.pytest_plugin"]
