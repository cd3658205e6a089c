"""``mailplane admin``: operators pause, resume and drain, and count or cancel queued mail, through a running
sender's admin API (``/v1/admin/...``), with an admin key from the environment (never an argument: shell
history and process lists show arguments)."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer

from mailplane.cli.common import usage_error

KEY_ENV = "MAILPLANE_ADMIN_KEY"
admin_app = typer.Typer(help="Pause, resume and drain sending, and count or cancel queued mail, on a running sender.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")


Url = Annotated[str, typer.Option("--url", help="The sender's base URL, e.g. http://127.0.0.1:8025.",
                                  envvar="MAILPLANE_SENDER_URL", show_default=False)]


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin API call; the API's error (status, message, problems) on stderr and exit 1 when it refuses."""
    key = os.environ.get(KEY_ENV)
    if not key:
        usage_error(f"set {KEY_ENV} to an admin key (one of the sender config's admin_keys)")
    if not url.startswith(("http://", "https://")):
        usage_error(f"--url must be the sender's http(s) URL, not {url!r}")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # the operator's own sender
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            answer = json.loads(err.read())
        except ValueError:
            answer = {"error": err.reason, "problems": []}
        print(f"error: {err.code} {answer.get('error', '')}", file=sys.stderr)
        for problem in answer.get("problems") or []:
            print(f"  {problem.get('field') or ''}: {problem.get('message')}", file=sys.stderr)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as err:
        print(f"error: cannot reach {url}: {err}", file=sys.stderr)
        raise typer.Exit(1) from None


def _show(row: dict[str, Any]) -> str:
    until = f" until {row['until']}" if row.get("until") else ""
    scope = f"{row['scope']} {row.get('tenant') or '*'}" + (f" {row['key']}" if row.get("key") else "")
    return f"{row['id']:>5}  {row['mode']:<5}  {scope}{until}  by {row['source']}: {row['reason']}"


@admin_app.command("pauses")
def pauses(url: Url) -> None:
    """The pauses and drains in force."""
    rows = _call(url, "GET", "/v1/admin/pauses")
    for row in rows:
        print(_show(row))
    if not rows:
        print("no pause in force")


@admin_app.command("pause")
def pause(
    url: Url,
    scope: Annotated[str, typer.Option("--scope", help="tenant, stream, ip or domain.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why: what the quota API and the logs say.",
                                        show_default=False)],
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant (a domain pause without one: every "
                                               "tenant's mail to it).", show_default=False)] = None,
    key: Annotated[str | None, typer.Option("--key", help="The stream, IP address or recipient domain.",
                                            show_default=False)] = None,
    drain: Annotated[bool, typer.Option("--drain", help="Refuse new mail instead (tenant or stream).")] = False,
    until: Annotated[str | None, typer.Option("--until", help="When it ends by itself, with a time zone "
                                              "(2026-12-05T08:00:00Z).", show_default=False)] = None,
) -> None:
    """Pause (or drain) a tenant, a stream, an IP or a recipient domain now."""
    row = _call(url, "POST", "/v1/admin/pauses", {"scope": scope, "tenant": tenant, "key": key, "reason": reason,
                                                  "mode": "drain" if drain else "pause", "until": until})
    print(_show(row))


@admin_app.command("resume")
def resume(url: Url, pause_id: Annotated[int, typer.Argument(metavar="ID", help="The pause's id (`pauses`).")]) -> None:
    """End a pause or drain: waiting mail is due again at once."""
    _call(url, "DELETE", f"/v1/admin/pauses/{pause_id}")
    print(f"resumed {pause_id}")


@admin_app.command("queue")
def queue(url: Url, tenant: Annotated[str, typer.Argument(metavar="TENANT")]) -> None:
    """A tenant's messages per stream and state."""
    answer = _call(url, "GET", f"/v1/admin/queue/{tenant}")
    for stream, states in sorted(answer["streams"].items()):
        print(f"{stream}: " + ", ".join(f"{state} {n}" for state, n in sorted(states.items())))


STATS_COLUMNS = ("sent", "delivered", "bounced", "complained", "deferred", "suppressed")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


@admin_app.command("stats")
def stats(url: Url, tenant: Annotated[str, typer.Argument(metavar="TENANT")],
          days: Annotated[int, typer.Option("--days", min=1, max=90, help="Days back, today included.")] = 7,
          as_json: Annotated[bool, typer.Option("--json", help="The API's answer as JSON.")] = False) -> None:
    """A tenant's sent, delivered, bounced, complained, deferred and suppressed mail per day and route, with the
    rates the tenant guard judges against its thresholds."""
    answer = _call(url, "GET", f"/v1/admin/stats/{tenant}?days={days}")
    if as_json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return
    guard = answer["guard"]
    print(f"{answer['tenant']}: the guard pauses above {_rate(guard['bounce_rate'])} bounces or "
          f"{_rate(guard['complaint_rate'])} complaints over {guard['window_hours']} h, from "
          f"{guard['min_volume']} sent")
    header = ["day", "route", *STATS_COLUMNS, "bounce", "complaint"]
    rows = [[r["day"], r["route"], *(str(r[c]) for c in STATS_COLUMNS), _rate(r["bounce_rate"]),
             _rate(r["complaint_rate"])] for r in answer["routes"]]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in [header, *rows]:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths,
                                                                                               strict=True))))
    if not rows:
        print(f"nothing sent in the last {days} day{'s' if days != 1 else ''}")


@admin_app.command("cancel")
def cancel(
    url: Url,
    tenant: Annotated[str, typer.Argument(metavar="TENANT")],
    reason: Annotated[str, typer.Option("--reason", show_default=False, help="Why (kept with each message).")],
    stream: Annotated[str | None, typer.Option("--stream", show_default=False, help="Only this stream's.")] = None,
) -> None:
    """Cancel a tenant's queued mail (never sent; mail being sent right now goes on)."""
    answer = _call(url, "POST", f"/v1/admin/queue/{tenant}/cancel", {"stream": stream, "reason": reason})
    print(f"cancelled {answer['cancelled']} queued messages of {tenant}")
