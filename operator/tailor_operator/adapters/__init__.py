"""The operator's side effects: the Kubernetes API and the Kafka admin API, nothing else."""
