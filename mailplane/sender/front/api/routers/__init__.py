"""One ``APIRouter`` per resource: messages, quotas, webhooks, unsubscribe, operations (health, metrics)."""
