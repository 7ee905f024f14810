"""GPU pools: the NVIDIA instance-type catalog, pool selections as Karpenter requirements, and their node classes."""
