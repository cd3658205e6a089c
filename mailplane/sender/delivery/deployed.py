"""What PowerMTA runs on each MTA host this instance submits to, read from the record ``roles/powermta`` writes.

The pacer asks :meth:`DeployedConfigs.about` for every IP of a batch's routes: a VMTA missing from
the record of its host (or a From domain its VMTA has no DKIM key for) is passed over like a paused
IP, so its mail waits in the queue instead of being handed to a PowerMTA that would refuse it (or
send it unsigned).  The record format is :mod:`mailplane.mta.deployed`'s.

A file is read again only when it changed (inode, size, modification time), so asking at every
reservation costs one ``stat`` per host.  A record that cannot be read keeps the last good one in
force (a half-written file must not stop a fleet); with none read yet the host's VMTAs count as not
deployed, since nobody can say they are.  A host with no record configured (a fleet without
Ansible) is not judged at all: the sender names its VMTAs as before, and says so once at start.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailplane.mta.deployed import Deployed, DeployedRecordError, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Can mail go to ``vmta`` now: ``missing`` says why not; ``domains``, the DKIM domains it has when known."""

    missing: str | None = None
    domains: frozenset[str] | None = None


UNKNOWN = Verdict()
"""No record configured for the host: nothing is known, nothing is held back."""


@dataclass
class _Read:
    identity: tuple[int, int, int] | None = None
    record: Deployed | None = None
    problem: str | None = None


class DeployedConfigs:
    """The deployed records of the hosts in ``paths`` (MTA host name to the record's file)."""

    def __init__(self, paths: Mapping[str, str], stack: str) -> None:
        self.paths = {host: Path(path) for host, path in paths.items()}
        self.stack = stack
        self._reads: dict[str, _Read] = {host: _Read() for host in self.paths}
        self._lock = threading.Lock()

    def judged(self, host: str) -> bool:
        return host in self.paths

    def about(self, host: str, vmta: str) -> Verdict:
        """What the record of ``host`` says of ``vmta``."""
        if host not in self.paths:
            return UNKNOWN
        read = self._refresh(host)
        path = self.paths[host]
        if read.record is None:
            return Verdict(missing=f"nothing is known deployed on {host}: {read.problem}")
        if not read.record.has(vmta):
            return Verdict(missing=f"VMTA {vmta} is not in the config PowerMTA runs on {host} ({path}): "
                                   "the powermta role has not deployed it yet")
        return Verdict(domains=read.record.vmtas[vmta])

    def _refresh(self, host: str) -> _Read:
        path = self.paths[host]
        with self._lock:
            read = self._reads[host]
            try:
                info = os.stat(path)
            except FileNotFoundError:
                if read.record is None:
                    read.problem = f"no record at {path} (the powermta role writes it once PowerMTA reloaded)"
                return read
            except OSError as err:
                read.problem = f"cannot read {path}: {err.strerror}"
                return read
            identity = (info.st_ino, info.st_size, info.st_mtime_ns)
            if identity == read.identity:
                return read
            read.identity = identity
            try:
                record = parse(path.read_bytes())
                if record.host != host or record.stack != self.stack:
                    raise DeployedRecordError(f"it is the record of host {record.host} of stack {record.stack}")
            except (OSError, DeployedRecordError) as err:
                read.problem = f"{path} is not a deployed record: {err}"
                log.error("deployed record of %s: %s%s", host, read.problem,
                          "; the last good one stays in force" if read.record else "")
                return read
            read.record, read.problem = record, None
            log.info("deployed record of %s: %d VMTAs", host, len(record.vmtas))
            return read
