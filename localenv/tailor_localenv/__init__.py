"""A real local Kubernetes control plane and Kafka broker, built from the package registries.

Used by the test fixtures and the demo alike: ``bootstrap`` builds the binaries and jars once
into a cache outside the checkout (standard library only, so it runs before any dependency is
installed); ``kube.ControlPlane`` and ``kafka.KafkaBroker`` start, health-check and stop them as
local processes.
"""
