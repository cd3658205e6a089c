"""What a submission may contain and who may send it: the request models and pure checks.

The front ends -- the HTTP API (:mod:`mailplane.sender.front.api`) and the SMTP listener
(:mod:`mailplane.sender.front.smtp`) -- authenticate the key, then hand each message here with the key's
tenant and sender.  Nothing here does I/O, so every rule is testable without a server:

* From must be one of the *sender's* allowed addresses (``*@domain`` allows any local part);
  the domain compares case-insensitively (and as its IDNA A-label), the local part exactly.
  Addresses come from the key's own tenant file, so a key of tenant A can never send as B.
* The stream must be one of the tenant's; ``marketing`` also needs ``sender.public_url`` in
  fleet.yaml, where the RFC 8058 one-click unsubscribe endpoint lives (Gmail and Yahoo require
  it of bulk mail, and the worker cannot add a ``List-Unsubscribe`` header without it).
* One recipient per message: a batch of N recipients is N messages, each paced, suppressed,
  retried and reported on by itself.
* Suppressed recipients are refused at submission (problem code ``suppressed``), not silently
  dropped later: the client learns now that this address will never get mail from it, and the
  queue does not fill with messages that can only end as ``suppressed``.  The worker still checks
  again at send time (an address may be suppressed while its message waits).  A retry with the
  idempotency key of a message already queued still gets its ``duplicate`` answer
  (:mod:`mailplane.sender.front.intake` skips the check there).
* All or nothing: :mod:`mailplane.sender.front.intake` queues a batch only when no message has a problem.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from mailplane.model.names import CAMPAIGN
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.model.types import normalise_email
from mailplane.sender.core.compose import (
    Smuggled,
    build_message,
    check_headers,
    header_value_problem,
    new_token,
    wire_bytes,
)
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message, NewMessage, canonical_address
from mailplane.sender.core.mime_in import Submission
from mailplane.sender.core.templating import MAX_OUTPUT_CHARS, MAX_SUBJECT_CHARS, Rendered, TemplateProblems, render

MAX_BATCH = 500
"""Messages in one request: enough for any page of a client's outbox, small enough that one
request's transaction (and its 422 listing) stays short."""
MAX_TEMPLATE_SUBJECT = 4096
MAX_ADDRESS = 254  # RFC 5321's path limit, less the angle brackets

_LIST_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
IDEMPOTENCY_KEY = r"^[A-Za-z0-9._:@+/=~-]{1,255}$"
"""Letters, digits and ``. _ : @ + / = ~ -``: UUIDs, ULIDs, order numbers and base64 keys fit; nothing
a database or a log line could take for something else (no NUL, no space, no control)."""
MAX_NAME = 256


class _In(BaseModel):
    """Request models reject unknown fields: a misspelt ``htlm`` must not send an empty mail."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TemplateIn(_In):
    """A Jinja2 template (sandboxed, variables required, HTML part autoescaped)."""

    subject: str = Field(min_length=1, max_length=MAX_TEMPLATE_SUBJECT)
    text: str | None = Field(None, max_length=MAX_OUTPUT_CHARS)
    html: str | None = Field(None, max_length=MAX_OUTPUT_CHARS)

    @model_validator(mode="after")
    def _a_body(self) -> TemplateIn:
        if self.text is None and self.html is None:
            raise ValueError("a template needs `text`, `html` or both")
        return self


class MessageIn(_In):
    """One message to one recipient: literal content, or a template with its variables."""

    from_: str = Field(alias="from", min_length=3, max_length=MAX_ADDRESS,
                       description="One of the sender's allowed From addresses (bare address, no display name).")
    to: str = Field(min_length=3, max_length=MAX_ADDRESS, description="The one recipient.")
    subject: str | None = Field(None, min_length=1, max_length=MAX_SUBJECT_CHARS)
    text: str | None = Field(None, max_length=MAX_OUTPUT_CHARS)
    html: str | None = Field(None, max_length=MAX_OUTPUT_CHARS)
    template: TemplateIn | None = None
    variables: dict[str, Any] | None = Field(None, description="Values for the template.")
    idempotency_key: str | None = Field(
        None, pattern=IDEMPOTENCY_KEY,
        description="A retry with the same key (same sender) and the same message returns the first message's "
        "id, status `duplicate`; the same key with another message is a 409 naming that id. Letters, digits "
        "and `._:@+/=~-`, at most 255.")
    from_name: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="Display name of From.")
    to_name: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="Display name of To.")
    reply_to_name: str | None = Field(None, min_length=1, max_length=MAX_NAME,
                                      description="Display name of Reply-To (with `reply_to`).")
    stream: Literal["transactional", "marketing"] = "transactional"
    headers: dict[str, str] | None = Field(None, description="Extra headers; structural ones are refused.")
    reply_to: str | None = Field(None, min_length=3, max_length=MAX_ADDRESS)
    list_id: str | None = Field(None, pattern=_LIST_ID,
                                description="Marketing list the unsubscribe link names (default: the stream).")
    campaign: str | None = Field(None, pattern=CAMPAIGN,
                                 description="The campaign the message belongs to: a tenant's campaigns take turns "
                                 "in the queue rather than one waiting for the other. Letters, digits and `._:-`, "
                                 "at most 64.")

    @model_validator(mode="after")
    def _content(self) -> MessageIn:
        if self.template is not None:
            if self.subject is not None or self.text is not None or self.html is not None:
                raise ValueError("give either `template` or `subject` with `text`/`html`, not both")
            return self
        if self.variables is not None:
            raise ValueError("`variables` only go with a `template`")
        if self.reply_to_name is not None and self.reply_to is None:
            raise ValueError("`reply_to_name` goes with `reply_to`")
        if self.subject is None:
            raise ValueError("`subject` is required (or a `template`)")
        if self.text is None and self.html is None:
            raise ValueError("`text`, `html` or both are required (or a `template`)")
        return self


class BatchIn(_In):
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH,
                                      description=f"At most {MAX_BATCH}; queued all together or not at all.")


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "messages" in value else "single"


SubmitBody = Annotated[Annotated[MessageIn, Tag("single")] | Annotated[BatchIn, Tag("batch")],
                       Discriminator(_shape)]
"""The body of ``POST /v1/messages``: one message, or ``{"messages": [...]}``."""


@dataclass(frozen=True)
class Problem:
    """Why one message (``index`` in the request; 0 for a single one) cannot be queued."""

    index: int | None
    field: str
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "code": self.code, "message": self.message}


# -- addresses -------------------------------------------------------------------------------


def address(value: str) -> str:
    """A single bare ``local@domain``, domain normalised; ``ValueError`` otherwise.

    Display names, lists, comments and whitespace are refused rather than parsed: one field,
    one mailbox, nothing a header could be smuggled through.  Local parts are ASCII dot-atoms
    (no SMTPUTF8 yet).
    """
    if len(value) > MAX_ADDRESS or any(c.isspace() or c in "<>,;:\"()[]\\" for c in value):
        raise ValueError(f"{value!r} is not a single bare address (local@domain)")
    normalised = normalise_email(value)
    if normalised.startswith("*@"):
        raise ValueError(f"{value!r} is a pattern, not an address")
    return normalised


def from_allowed(patterns: list[str], from_addr: str) -> bool:
    """``from_addr`` (normalised) matches one of the sender's addresses or ``*@domain`` patterns."""
    local, _, domain = from_addr.rpartition("@")
    for pattern in patterns:
        p_local, _, p_domain = pattern.rpartition("@")
        if p_domain == domain and p_local in ("*", local):
            return True
    return False


# -- one message -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A message that passed every check but suppression (which needs the store)."""

    new: NewMessage


_Report = Callable[[str, str, str], None]
"""Records one problem of the message being checked: (field, code, text)."""


def _envelope(problem: _Report, tenant: Tenant, sender: str, fleet: Fleet, from_: str,
              to: str, reply_to: str | None, stream: str) -> tuple[str | None, str | None, str | None]:
    """The From, recipient and Reply-To addresses in canonical form (None where a problem was reported), and
    the stream's problems: the rules every way in shares."""
    patterns = next((list(s.from_) for s in tenant.senders if s.name == sender), [])
    from_addr = to_addr = reply_addr = None
    try:
        from_addr = address(from_)
    except ValueError as err:
        problem("from", "invalid_address", str(err))
    if from_addr is not None and not from_allowed(patterns, from_addr):
        problem("from", "from_not_allowed", f"{from_!r} is not an address sender {tenant.name}/{sender} may send "
                f"from (allowed: {', '.join(patterns)})")
    try:
        to_addr = address(to)
    except ValueError as err:
        problem("to", "invalid_address", str(err))
    if reply_to is not None:
        try:
            reply_addr = address(reply_to)
        except ValueError as err:
            problem("reply_to", "invalid_address", str(err))
    if stream not in tenant.streams:
        problem("stream", "stream_not_allowed",
                f"tenant {tenant.name} sends {', '.join(tenant.streams)} mail, not {stream}")
    elif stream == "marketing" and fleet.settings.sender is None:
        problem("stream", "no_unsubscribe_endpoint",
                "marketing mail needs one-click unsubscribe: fleet.yaml must set sender.public_url")
    return from_addr, to_addr, reply_addr


def _check_content(problem: _Report, message: MessageIn, headers: dict[str, str]) -> None:
    """Display names bound for headers, texts free of NUL, and the application's headers under the composer's
    rule (it knows which headers it writes itself), Reply-To given once."""
    for name in ("from_name", "to_name", "reply_to_name"):
        value = getattr(message, name)
        if value is not None and (why := header_value_problem(value)) is not None:
            problem(name, "invalid_header_value", f"the display name {why}")
    for name, value in _texts(message):
        if "\x00" in value:
            problem(name, "nul", f"{name} contains NUL, which no mail may carry")
    for text in check_headers(headers):
        problem("headers", "header_refused", text)
    if message.reply_to is not None and any(name.lower() == "reply-to" for name in headers):
        problem("reply_to", "header_refused", "Reply-To given both as reply_to and in headers")


def _rendered_content(problem: _Report, message: MessageIn,
                      rendered: Rendered | TemplateProblems | None) -> tuple[str | None, str | None, str | None]:
    """The subject, text and HTML to queue: the message's own, or its template's rendering (the caller's, or
    rendered here); a template that does not render is reported part by part and leaves the message's own."""
    if message.template is None:
        return message.subject, message.text, message.html
    t = message.template
    try:
        if rendered is None:
            rendered = render(t.subject, t.text, t.html, message.variables or {})
        elif isinstance(rendered, TemplateProblems):
            raise rendered
    except TemplateProblems as err:
        for part, text in err.problems:
            code = "undefined_variable" if text.startswith("undefined variable") else "template_error"
            problem(f"template.{part}", code, text)
        return message.subject, message.text, message.html
    for part, value in (("template.text", rendered.text), ("template.html", rendered.html)):
        if value is not None and "\x00" in value:
            problem(part, "nul", f"{part} renders NUL, which no mail may carry")
    return rendered.subject, rendered.text, rendered.html


def check_message(index: int, message: MessageIn, tenant: Tenant, sender: str, fleet: Fleet,
                  rendered: Rendered | TemplateProblems | None = None) -> Checked | list[Problem]:
    """Every problem of one message, or what to queue; pure (rendering included).

    ``rendered``: the template's result when the caller rendered it already (the API does, in its
    bounded render workers); None renders it here.
    """
    problems: list[Problem] = []

    def problem(field: str, code: str, text: str) -> None:
        problems.append(Problem(index, field, code, text))

    from_addr, to_addr, reply_to = _envelope(problem, tenant, sender, fleet, message.from_, message.to,
                                             message.reply_to, message.stream)
    headers = dict(message.headers or {})
    _check_content(problem, message, headers)
    subject, text_part, html_part = _rendered_content(problem, message, rendered)
    where = "template.subject" if message.template is not None else "subject"
    if subject is not None and (why := header_value_problem(subject)) is not None:
        problem(where, "invalid_subject", f"the subject {why}")

    if problems:
        return problems
    assert from_addr is not None and to_addr is not None
    payload = {"subject": subject, "text": text_part, "html": html_part, "headers": headers,
               "reply_to": reply_to, "list_id": message.list_id, "from_name": message.from_name,
               "to_name": message.to_name, "reply_to_name": message.reply_to_name,
               "token": new_token(), "fingerprint": fingerprint(message)}
    new = NewMessage(tenant=tenant.name, sender=sender, stream=message.stream, from_addr=from_addr,
                     to_addr=to_addr, payload=payload, idempotency_key=message.idempotency_key,
                     campaign=message.campaign or "")
    trial = trial_problem(new, fleet)
    if trial is not None:
        return [Problem(index, "body", "unsendable", trial)]
    return Checked(new)


def check_submission(index: int, submission: Submission, recipient: str, stream: str, tenant: Tenant, sender: str,
                     fleet: Fleet) -> Checked | list[Problem]:
    """The checks of :func:`check_message` for one recipient of a message submitted over SMTP
    (``mailplane.sender.core.mime_in``): the same From, recipient, stream and header rules, the same trial
    composition; pure."""
    problems: list[Problem] = []

    def problem(field: str, code: str, text: str) -> None:
        problems.append(Problem(index, field, code, text))

    from_addr, to_addr, reply_to = _envelope(problem, tenant, sender, fleet, submission.from_addr, recipient,
                                             submission.reply_to, stream)
    to_name = submission.to_names.get(recipient.lower())
    for name, value in (("from_name", submission.from_name), ("to_name", to_name),
                        ("reply_to_name", submission.reply_to_name), ("subject", submission.subject)):
        if value is not None and (why := header_value_problem(value)) is not None:
            problem(name, "invalid_header_value", f"the {name.replace('_', ' ')} {why}")
    for text in check_headers(submission.headers):
        problem("headers", "header_refused", text)
    if problems:
        return problems
    assert from_addr is not None and to_addr is not None
    payload = {"subject": submission.subject, "mime": base64.b64encode(submission.entity).decode("ascii"),
               "headers": submission.headers, "reply_to": reply_to, "from_name": submission.from_name,
               "to_name": to_name, "reply_to_name": submission.reply_to_name, "token": new_token(),
               "fingerprint": submission.fingerprint}
    key = None
    if submission.message_id:  # the client's retry of the same message is the same message
        key = "smtp-" + hashlib.sha256(f"{submission.message_id}\n{to_addr}".encode()).hexdigest()
    new = NewMessage(tenant=tenant.name, sender=sender, stream=stream, from_addr=from_addr, to_addr=to_addr,
                     payload=payload, idempotency_key=key, campaign=submission.campaign or "")
    trial = trial_problem(new, fleet)
    if trial is not None:
        return [Problem(index, "body", "unsendable", trial)]
    return Checked(new)


def _texts(message: MessageIn) -> list[tuple[str, str]]:
    """Every text of a message that ends up in the mail, by its field name."""
    out = [(name, getattr(message, name)) for name in ("subject", "text", "html") if getattr(message, name)]
    if message.template is not None:
        out += [(f"template.{n}", getattr(message.template, n)) for n in ("subject", "text", "html")
                if getattr(message.template, n)]
    out += [(f"headers.{k}", v) for k, v in (message.headers or {}).items()]
    return out


def fingerprint(message: MessageIn) -> str:
    """SHA-256 of the message as submitted (canonical JSON, the idempotency key left out): the same key
    with another message is a conflict, the same message a retry."""
    data = message.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def trial_problem(new: NewMessage, fleet: Fleet) -> str | None:
    """Compose the message once as it will be sent and parse it back (:func:`verify_wire`): what cannot
    be built, or does not parse back to exactly the headers written, is refused now, not at send time."""
    probe = Message(id=0, tenant=new.tenant, sender=new.sender, stream=new.stream, from_addr=new.from_addr,
                    to_addr=new.to_addr, payload=new.payload, idempotency_key=None, state="queued", attempts=0,
                    next_attempt_at=0.0, claimed_by=None, claimed_until=None, transport=None, ip=None,
                    last_error=None)
    public_url = fleet.settings.sender.public_url if fleet.settings.sender else None
    grant = Granted("pmta", "192.0.2.1", "trial", datetime.date(2000, 1, 1))
    try:
        wire_bytes(build_message(probe, grant, public_url=public_url, unsubscribe_key=_TRIAL_KEY,
                                 now=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)))
    except (Smuggled, ValueError) as err:
        return f"the message cannot be sent as given: {err}"
    return None


_TRIAL_KEY = "trial-composition-key-not-a-secret"


def suppression_problems(checked: list[tuple[int, Checked]], suppressed: set[str]) -> list[Problem]:
    """A ``suppressed`` problem for each message whose recipient is in ``suppressed`` (canonical form)."""
    return [Problem(i, "to", "suppressed",
                    f"{c.new.to_addr} is on tenant {c.new.tenant}'s suppression list (bounce, complaint or "
                    "unsubscribe): it will never be sent mail")
            for i, c in checked if canonical_address(c.new.to_addr) in suppressed]
