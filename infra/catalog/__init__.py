"""Facts the program and the tools rest on, read from infra/data/*.json by one loader (`data`): the NVIDIA GPU
catalog generated from Karpenter's instance-type reference and a selection's requirements evaluated against it
(`gpus`, `selection`), and the Kubernetes versions with their EKS support windows (`kubernetes_versions`)."""
