"""``python -m mailplane.sender.front.smtp_check LISTEN TLS``: is the SMTP submission listener up and right?

The health check ``roles/sender`` runs on the host after a (re)start, beside ``GET /healthz``:
connect, read the ``220`` greeting, ``EHLO``; on a ``starttls`` listener, ``STARTTLS`` and ``EHLO``
again; on an ``implicit`` one, TLS from the first byte.  Then ``AUTH`` must be offered (with PLAIN
and LOGIN), as a client would need it.  The certificate is checked against the system's CAs, or
``--cafile``, and ``--server-name`` (a listener on 0.0.0.0 is checked at 127.0.0.1, where the
certificate's name is not the address: give the name clients use).  No login is tried.

Exit 0 and one line saying what was found, or exit 1 and why not.
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import ssl
import sys

from mailplane.model.addresses import parse_listener


class _Implicit(smtplib.SMTP_SSL):
    """TLS from the first byte, the certificate checked against ``name`` rather than the address dialled."""

    def __init__(self, name: str, *, timeout: float, context: ssl.SSLContext) -> None:
        self._name = name
        super().__init__(timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        raw = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(raw, server_hostname=self._name)


def _address(listen: str) -> tuple[str, int]:
    host, port = parse_listener(listen)
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port


def check(listen: str, tls: str, *, cafile: str | None = None, server_name: str | None = None,
          timeout: float = 10.0) -> str:
    """What the listener offers, one line; raises ``OSError`` or ``smtplib.SMTPException`` when it is not right."""
    host, port = _address(listen)
    context = ssl.create_default_context(cafile=cafile)
    if server_name is None:
        context.check_hostname = False  # the address alone: the chain is still verified
    name = server_name or host
    smtp = _Implicit(name, timeout=timeout, context=context) if tls == "implicit" else smtplib.SMTP(timeout=timeout)
    smtp.connect(host, port)
    smtp._host = name  # type: ignore[attr-defined]  # what STARTTLS checks the certificate against
    with smtp:
        smtp.ehlo("mailplane-health-check")
        if tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPException("STARTTLS is not offered")
            if smtp.has_extn("auth"):
                raise smtplib.SMTPException("AUTH is offered before TLS")
            smtp.starttls(context=context)
            smtp.ehlo("mailplane-health-check")
        mechanisms = set(smtp.esmtp_features.get("auth", "").upper().split())
        if not {"PLAIN", "LOGIN"} <= mechanisms:
            raise smtplib.SMTPException(f"AUTH PLAIN and LOGIN are not both offered (got {sorted(mechanisms)})")
        size = smtp.esmtp_features.get("size", "?")
        return f"{listen} ({tls}): AUTH {' '.join(sorted(mechanisms))}, SIZE {size}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailplane.sender.front.smtp_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("listen", help="ADDRESS:PORT of the listener")
    parser.add_argument("tls", choices=["starttls", "implicit", "none"])
    parser.add_argument("--cafile", help="CA certificates to verify the server with (default: the system's)")
    parser.add_argument("--server-name", help="the name the certificate must carry")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        print(check(args.listen, args.tls, cafile=args.cafile, server_name=args.server_name, timeout=args.timeout))
    except (OSError, smtplib.SMTPException, ValueError) as err:
        print(f"{args.listen} ({args.tls}): {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
