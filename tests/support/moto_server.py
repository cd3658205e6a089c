"""moto in server mode on a loopback port: real HTTP for boto3, so the transport's wire path is tested.

Usage in a test module::

    @pytest.fixture(scope="module")
    def moto_url() -> Iterator[str]:
        with MotoServer() as server:
            yield server.url

The server runs in a thread of the test process, so tests can also look at moto's backends
(:func:`ses_sent`); moto's state is global to the process and shared by every server in it, which
is why :meth:`MotoServer.reset` exists and tests should use addresses of their own.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from ports import free_port

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@contextmanager
def dummy_credentials() -> Iterator[None]:
    """Dummy AWS credentials in the environment for boto3's default chain, restored afterwards.

    Also stops boto3 from reading a developer's ~/.aws files, which could point at a real account.
    """
    saved = {name: os.environ.get(name) for name in (*DUMMY_CREDENTIALS, "AWS_PROFILE", "AWS_CONFIG_FILE",
                                                     "AWS_SHARED_CREDENTIALS_FILE")}
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


ALREADY_EXISTS = {"AlreadyExistsException", "ConfigurationSetAlreadyExistsException"}
"""The codes moto answers a second create with (SES v2's and, for configuration sets, v1's)."""


class MotoServer:
    """``ThreadedMotoServer`` on 127.0.0.1 and a free port, with dummy credentials while it runs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._credentials = dummy_credentials()

    def __enter__(self) -> MotoServer:
        self._credentials.__enter__()
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self._credentials.__exit__(None, None, None)

    def reset(self) -> None:
        """Forget every resource and sent message (moto's reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.session.Session().client(service, region_name=region, endpoint_url=self.url)

    def verify_identity(self, identity: str, region: str = REGION) -> None:
        """Make an address or a domain a verified SES identity (moto refuses sends from others).

        Idempotent: moto's state outlives a server, so a module started after another that made
        the same identity finds it there."""
        sesv2 = self.client("sesv2", region)
        try:
            sesv2.create_email_identity(EmailIdentity=identity)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ALREADY_EXISTS:
                raise

    def create_configuration_set(self, name: str, region: str = REGION) -> None:
        """Create a configuration set, or find it made by an earlier server of this process."""
        sesv2 = self.client("sesv2", region)
        try:
            sesv2.create_configuration_set(ConfigurationSetName=name)
        except ClientError as err:
            if err.response["Error"]["Code"] not in ALREADY_EXISTS:
                raise


def ses_sent(region: str = REGION, account: str = ACCOUNT_ID) -> list[Any]:
    """Raw messages SES (moto) accepted so far, oldest first: ``.source``, ``.destinations``, ``.raw_data``."""
    from moto.ses.models import ses_backends

    return list(ses_backends[account][region].sent_messages)
