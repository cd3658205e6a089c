"""``mailplane serve``: the HTTP API, the delivery workers and the event ingestion in one process.

uvicorn runs in the main thread (it owns SIGTERM and SIGINT, so ``systemctl stop`` drains
requests); delivery and accounting ingestion run in threads beside it and are stopped after it,
so a message accepted by the last request is durably queued before the process exits, and the
workers finish or give back the batches they hold.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import uvicorn

from mailplane.model.addresses import parse_listener
from mailplane.sender.config import SenderConfig
from mailplane.sender.service import Service

log = logging.getLogger("mailplane.sender")

def serve(stack_dir: Path, config: SenderConfig, *, log_level: str = "info") -> None:
    """Run one instance until it is told to stop."""
    from mailplane.sender.delivery.worker import Delivery
    from mailplane.sender.front.api import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service.open(stack_dir, config)
    events = service.attach_events()
    delivery = Delivery(service)
    stop = threading.Event()
    ingest = threading.Thread(target=events.run_forever, args=(stop, config.events_interval_seconds),
                              name="mailplane-accounting", daemon=True)
    account = threading.Thread(target=_refresh_account, args=(service, stop), name="mailplane-ses-account",
                               daemon=True)
    host, port = parse_listener(config.listen)
    server = uvicorn.Server(uvicorn.Config(create_app(service), host=host, port=port, log_level=log_level,
                                           access_log=False, server_header=False))
    # uvicorn restores the handlers it found and raises the signal again once it has stopped;
    # with the default SIGTERM handler that would kill the process before the workers stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    submission = None
    if config.submission is not None:
        from mailplane.sender.front.smtp import SubmissionServer

        submission = SubmissionServer(service, config.submission)
        submission.start()  # a port taken or a certificate unreadable stops the start here
    delivery.start()
    ingest.start()
    account.start()
    log.info("mailplane sender for stack %s: http://%s, %d workers, database %s",
             service.stack_name, config.listen, config.workers, service.store.engine.url.render_as_string())
    try:
        server.run()
    finally:
        stop.set()
        if submission is not None:
            submission.stop()  # no new mail, then the workers finish what they hold
        delivery.stop()
        ingest.join(10)
        account.join(10)
        service.close()


def _refresh_account(service: Service, stop: threading.Event) -> None:
    """Read the SES account's limits now and every ``REFRESH_SECONDS`` (pacing starts on fleet.yaml's)."""
    from mailplane.sender.delivery.account import REFRESH_SECONDS

    while not stop.is_set():
        service.refresh_account()
        stop.wait(REFRESH_SECONDS)
