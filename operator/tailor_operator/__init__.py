"""Tailor's Kubernetes operator: the PersonalizationPipeline API, renderers, reconcile loop."""
