"""Warmup: the status of IPs and tenants on a date, from the plans the model defines
(:mod:`mailplane.model.warmup_plans`).  Depends on the model, never the other way round."""
