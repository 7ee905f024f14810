"""eks-gpu-spot: one ComponentResource per concern, wired together in `infra.stack`."""
