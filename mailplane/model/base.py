"""The base of every fleet model: strict, closed, immutable.

Strict because YAML already types its scalars: a lenient model would read ``daily_quota: yes``
as 1 or ``started: 1700000000`` as a date.  Closed (unknown keys rejected) because a misspelt key
silently ignored is a change that never happens.  Immutable because one loaded fleet is shared
by every consumer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=False)
