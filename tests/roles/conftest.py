"""Fixtures of the role tests: the wheel the sender role installs and the accounts its runs use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_env import build_wheel, remove_accounts, system_account, throwaway_name
from sender_deployment import Accounts


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the repository, as the sender role's pip step installs it (``--no-deps``)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def sender_accounts() -> Iterator[Accounts]:
    """PowerMTA's group made here (its package would); the service's user and group are the
    role's to make; all three removed after the module."""
    made = Accounts(throwaway_name("sd"), throwaway_name("sd"), throwaway_name("pm"))
    with system_account(throwaway_name("pm"), made.pmta_group):
        try:
            yield made
        finally:
            remove_accounts([made.user], [made.group])
