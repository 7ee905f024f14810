"""What the stack tells CloudWatch, as pure functions of the config: the CloudWatch Observability add-on's
configuration and the dashboard and alarm (infra/observability.py registers them)."""
