"""Warmup: plans (pure tables) and the status of IPs and tenants on a date."""
