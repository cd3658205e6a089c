"""The sender service: durable queue, pacing gates, delivery and events."""
