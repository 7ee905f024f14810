"""GPU pools: NodePool specs, node-class settings and overlays per pool, what their limits bound, where pods land."""
