#!/usr/bin/env python3
"""Development SMTP sink: a real SMTP server (aiosmtpd) that writes every received message
to DIR as one .eml file. Used by `herald dev up` and the integration tests.

Recipients whose local part starts with "bounce" are refused permanently (550) and those
starting with "tempfail" temporarily (451), so tests can exercise both outcomes.
With --tls-cert/--tls-key the sink offers STARTTLS and requires it before any mail."""
import argparse
import asyncio
import os
import signal
import ssl
import time

from aiosmtpd.controller import Controller


class SaveToDir:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # Test addresses that behave like real mailboxes gone bad.
        local = address.split("@", 1)[0]
        if local.startswith("bounce"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if local.startswith("tempfail"):
            return "451 4.3.0 <%s>: temporarily unavailable, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = "%d-%06d.eml" % (int(time.time() * 1000), self.count)
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(tmp, "wb") as f:
            f.write(("X-Herald-Rcpt: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(("X-Herald-Tls: %s\r\n" % ("yes" if session.ssl else "no")).encode())
            f.write(data)
        os.rename(tmp, os.path.join(self.directory, name))  # readers never see partial files
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    tls = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(SaveToDir(args.dir), hostname=args.host, port=args.port, **tls)
    controller.start()
    print("smtp sink listening on %s:%d, writing to %s" % (args.host, args.port, args.dir), flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
