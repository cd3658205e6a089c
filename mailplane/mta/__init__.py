"""PowerMTA: the per-host view of the fleet, its rendering and its checks."""
