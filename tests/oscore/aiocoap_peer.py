"""aiocoap's OSCORE as an independent peer for tests/oscore/test_interop_aiocoap.py.

Runs in its own process (aiocoap owns an asyncio loop; our code is sans-IO or Trio) and speaks
JSON lines on stdout. The security context is an aiocoap ``FilesystemSecurityContext`` in
``--dir`` (settings written here from the arguments), so aiocoap does its own key derivation.

    client: send each request of --requests (JSON list of {"path", "payload" hex, "cf"}) as a
            POST with Content-Format "cf" (none when null or missing: EdgeRM's protected form;
            60: the form of older agents) to coap://127.0.0.1:--port/<path>, OSCORE-protected from
            sender sequence number --seq on; print {"code", "payload"} or {"error", and for
            an unprotected answer "plain_code", "plain_payload"} per request.
    server: serve POST "a" (echo: "echo:" + payload, 2.04) behind OscoreSiteWrapper on
            127.0.0.1:--port; print {"ready": true}; refuse unprotected requests with 4.01.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from pathlib import Path
from typing import Any


def write_context(directory: Path, secret: str, sender: str, recipient: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "settings.json").write_text(json.dumps({
        "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256",
        "sender-id_hex": sender, "recipient-id_hex": recipient,
    }))
    (directory / "secret.json").write_text(json.dumps({"secret_hex": secret}))


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def client(args: argparse.Namespace) -> None:
    import aiocoap
    from aiocoap.oscore import FilesystemSecurityContext

    # Start at --seq the way aiocoap itself resumes: from its persisted sequence.json.
    (args.dir / "sequence.json").write_text(json.dumps(
        {"next-to-send": args.seq, "received": {"index": 0, "bitfield": 0}}))
    secctx = FilesystemSecurityContext(str(args.dir))
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials[f"coap://127.0.0.1:{args.port}/*"] = secctx
    try:
        for req in json.loads(args.requests):
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{args.port}/"
                                  f"{req['path']}", payload=bytes.fromhex(req["payload"]))
            if req.get("cf") is not None:
                msg.opt.content_format = req["cf"]
            try:
                resp = await asyncio.wait_for(ctx.request(msg).response, 10)
            except Exception as e:  # reported, the test decides
                plain = getattr(e, "plain_message", None)  # an unprotected answer
                out({"error": f"{type(e).__name__}: {e}",
                     "plain_code": None if plain is None else str(plain.code.dotted),
                     "plain_payload": None if plain is None else plain.payload.hex()})
                continue
            out({"code": str(resp.code.dotted), "payload": resp.payload.hex(),
                 "seq_after": secctx.sender_sequence_number})
    finally:
        await ctx.shutdown()


async def server(args: argparse.Namespace) -> None:
    import aiocoap
    from aiocoap import resource
    from aiocoap.credentials import CredentialsMap
    from aiocoap.oscore import FilesystemSecurityContext
    from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
    from aiocoap.transports.oscore import OSCOREAddress

    class Echo(resource.Resource):
        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            if not isinstance(request.remote, OSCOREAddress):
                return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"use OSCORE")
            return aiocoap.Message(code=aiocoap.CHANGED, content_format=60,
                                   payload=b"echo:" + request.payload)

    creds = CredentialsMap()
    creds[":edgerm"] = FilesystemSecurityContext(str(args.dir))
    site = resource.Site()
    site.add_resource(["a"], Echo())
    ctx = await aiocoap.Context.create_server_context(
        OscoreSiteWrapper(site, creds), bind=("127.0.0.1", args.port), transports=["udp6"])
    out({"ready": True})
    try:
        await asyncio.Event().wait()  # until the test kills us
    finally:
        await ctx.shutdown()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["client", "server"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--sender", default="")
    p.add_argument("--recipient", default="")
    p.add_argument("--seq", type=int, default=1)
    p.add_argument("--requests", default="[]")
    args = p.parse_args()
    if not (args.dir / "settings.json").exists():
        write_context(args.dir, args.secret, args.sender, args.recipient)
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(client(args) if args.mode == "client" else server(args))


if __name__ == "__main__":
    main()
