"""Facts about instance types: the NVIDIA GPU catalog (generated from Karpenter's instance-type reference) and a
selection's Karpenter requirements evaluated against it."""
