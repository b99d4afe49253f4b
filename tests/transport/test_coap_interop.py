"""Interop with independent CoAP implementations: aiocoap (both roles) and libcoap's client.

aiocoap is asyncio, so it runs in a subprocess (never inside our Trio loop); libcoap is the
Debian ``coap-client-notls`` binary. Each peer prints what it received and the test compares
it byte for byte (or by SHA-256 for the large bodies).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from edgerm.coap import Code, parse_links
from edgerm.transport.coap import (
    CoapServer,
    Observation,
    Request,
    Response,
    Site,
    open_coap_client,
)

BIG = bytes(range(256)) * 24  # 6 KiB: Block2 download
UPLOAD = bytes((i * 7) & 0xFF for i in range(5500))  # 5.5 KB: Block1 upload
MANIFEST = "m/" + hashlib.sha256(b"wasm").hexdigest()
LIBCOAP = shutil.which("coap-client-notls")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def interop_site(nursery: trio.Nursery, notifications: int = 4,
                 interval: float = 0.1) -> Site:
    site = Site()

    async def info(req: Request) -> Response:
        return Response(Code.CONTENT, b"edgerm " + "/".join(req.path).encode(), 0)

    async def echo(req: Request) -> Response:
        return Response(Code.CHANGED, req.payload, req.content_format)

    async def upload(req: Request) -> Response:
        return Response(Code.CHANGED, f"{len(req.payload)} {sha(req.payload)}".encode(), 0)

    async def manifest(req: Request) -> Response:
        return Response(Code.CONTENT, BIG, 42)

    async def push(observation: Observation) -> None:
        for i in range(1, notifications + 1):
            await trio.sleep(interval)
            if observation.gone:
                return
            await observation.notify(f"n{i}".encode(), content_format=0)

    async def obs(req: Request) -> Response:
        if req.observation is not None:
            nursery.start_soon(push, req.observation)
        return Response(Code.CONTENT, b"n0", 0, observe=True)

    site.add("info", info, methods=[Code.GET])
    site.add("a", echo, methods=[Code.POST])
    site.add("up", upload, methods=[Code.POST, Code.PUT])
    site.add("m", manifest, methods=[Code.GET], prefix=True)
    site.add("obs", obs, methods=[Code.GET], observable=True, rt="edgerm.test")
    return site


# --------------------------------------------------------------------------- aiocoap client

AIOCOAP_CLIENT = r"""
import asyncio, hashlib, json, sys
import aiocoap
from aiocoap.optiontypes import BlockOption

async def main(base, upload_len):
    ctx = await aiocoap.Context.create_client_context()
    out = {}
    r = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/info")).response
    out["get"] = [str(r.code), r.payload.decode()]
    r = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=base + "/a", payload=b"hello",
                                          content_format=60)).response
    out["post"] = [str(r.code), r.payload.decode(), r.opt.content_format]
    m = aiocoap.Message(code=aiocoap.GET, uri=base + "/MANIFEST")
    m.opt.block2 = BlockOption.BlockwiseTuple(0, False, 2)   # ask for 64-byte blocks
    r = await ctx.request(m).response
    out["block2"] = [len(r.payload), hashlib.sha256(r.payload).hexdigest()]
    data = bytes((i * 7) & 0xFF for i in range(upload_len))
    r = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=base + "/up",
                                          payload=data)).response
    out["block1"] = [str(r.code), r.payload.decode()]
    req = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/obs", observe=0))
    first = await req.response
    seen = [first.payload.decode()]
    async for n in req.observation:
        seen.append(n.payload.decode())
        if len(seen) == 4:
            req.observation.cancel()
            break
    out["observe"] = seen
    r = await ctx.request(aiocoap.Message(code=aiocoap.GET,
                                          uri=base + "/.well-known/core")).response
    out["wkc"] = r.payload.decode()
    await ctx.shutdown()
    print(json.dumps(out))

asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2])), 30))
""".replace("MANIFEST", MANIFEST)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
async def test_aiocoap_client_against_our_server(nursery: trio.Nursery, family: str) -> None:
    server = CoapServer(interop_site(nursery))
    addr = await nursery.start(server.serve, "::", 0)
    base = f"coap://127.0.0.1:{addr[1]}" if family == "ipv4" else f"coap://[::1]:{addr[1]}"
    with trio.fail_after(40):
        proc = await trio.run_process(
            [sys.executable, "-c", AIOCOAP_CLIENT, base, str(len(UPLOAD))],
            capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = json.loads(proc.stdout)
    assert out["get"] == ["2.05 Content", "edgerm info"]
    assert out["post"] == ["2.04 Changed", "hello", 60]
    assert out["block2"] == [len(BIG), sha(BIG)]
    assert out["block1"] == ["2.04 Changed", f"{len(UPLOAD)} {sha(UPLOAD)}"]
    assert out["observe"] == ["n0", "n1", "n2", "n3"]
    targets = {link.target for link in parse_links(out["wkc"])}
    assert {"/info", "/a", "/up", "/m", "/obs"} <= targets
    assert server.endpoint.stats.received > len(BIG) // 64  # Block2 really was 64-byte blocks
    assert server.endpoint.stats.malformed == 0


# --------------------------------------------------------------------------- aiocoap server

AIOCOAP_SERVER = r"""
import asyncio, hashlib, sys
import aiocoap, aiocoap.resource as resource

BIG = bytes(range(256)) * 24

class Echo(resource.Resource):
    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

class Big(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=BIG)

class Upload(resource.Resource):
    async def render_post(self, request):
        body = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED,
            payload=f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())

class Counter(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.count = 0
    async def tick(self):
        while True:
            await asyncio.sleep(0.05)
            self.count += 1
            self.updated_state()
    async def render_get(self, request):
        return aiocoap.Message(payload=str(self.count).encode())

async def main(port):
    root = resource.Site()
    root.add_resource([".well-known", "core"],
                      resource.WKCResource(root.get_resources_as_linkheader))
    root.add_resource(["echo"], Echo())
    root.add_resource(["big"], Big())
    root.add_resource(["up"], Upload())
    counter = Counter()
    root.add_resource(["counter"], counter)
    await aiocoap.Context.create_server_context(root, bind=("::", port))
    asyncio.ensure_future(counter.tick())
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main(int(sys.argv[1])))
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::", 0))
        return int(s.getsockname()[1])


async def test_our_client_against_aiocoap_server() -> None:
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, "-c", AIOCOAP_SERVER, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with trio.fail_after(20):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == b"ready"
        async with open_coap_client() as client:
            for host in ("127.0.0.1", "::1"):
                remote = (host, port)
                r = await client.post(remote, "echo", b"\x01\x02\x03", token_length=1)
                assert (r.code, r.payload) == (Code.CHANGED, b"\x01\x02\x03")
                r = await client.get(remote, "big", block_size=64)
                assert (r.code, r.payload) == (Code.CONTENT, BIG)
                r = await client.get(remote, "big")
                assert r.payload == BIG
                r = await client.post(remote, "up", UPLOAD, block_size=128)
                assert r.payload.decode() == f"{len(UPLOAD)} {sha(UPLOAD)}"
                r = await client.get(remote, ".well-known/core")
                assert {"</echo>", "</big>"} <= set(r.payload.decode().split(",")) or \
                    "/echo" in {link.target for link in parse_links(r.payload.decode())}
            async with client.observe(("127.0.0.1", port), "counter") as observation:
                values = []
                with trio.fail_after(5):
                    async for response in observation:
                        values.append(int(response.payload))
                        if len(values) == 4:
                            break
            assert values == sorted(values) and len(set(values)) == 4
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- libcoap


async def libcoap(*args: str, stdin: bytes | None = None) -> bytes:
    # Required, not optional: Debian package libcoap3-bin (see docs in ENVIRONMENT.md).
    assert LIBCOAP is not None, "coap-client-notls not found; apt-get install libcoap3-bin"
    with trio.fail_after(30):
        proc = await trio.run_process([LIBCOAP, *args], capture_stdout=True,
                                      capture_stderr=True, check=False, stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return bytes(proc.stdout)


async def test_libcoap_client_against_our_server(nursery: trio.Nursery,
                                                 tmp_path: Path) -> None:
    server = CoapServer(interop_site(nursery, notifications=4, interval=0.2))
    addr = await nursery.start(server.serve, "::", 0)
    base4 = f"coap://127.0.0.1:{addr[1]}"
    base6 = f"coap://[::1]:{addr[1]}"

    # libcoap prints text payloads followed by a newline.
    assert await libcoap("-m", "get", base4 + "/info") == b"edgerm info\n"
    assert await libcoap("-m", "get", base6 + "/info") == b"edgerm info\n"
    assert await libcoap("-m", "post", "-t", "60", "-e", "hello", base4 + "/a") == b"hello\n"

    out = await libcoap("-m", "get", "-b", "64", "-o", "-", base4 + "/" + MANIFEST)
    assert out == BIG
    blocks_seen = server.endpoint.stats.received

    upload = tmp_path / "upload.bin"
    upload.write_bytes(UPLOAD)
    out = await libcoap("-m", "post", "-b", "256", "-f", str(upload), base4 + "/up")
    assert out.decode().strip() == f"{len(UPLOAD)} {sha(UPLOAD)}"
    assert server.endpoint.stats.received - blocks_seen >= len(UPLOAD) // 256

    out = await libcoap("-m", "get", "-s", "2", base4 + "/obs")
    # The registration response and four notifications (libcoap prints them back to back).
    assert out.strip() == b"n0n1n2n3n4"

    out = await libcoap("-m", "get", base6 + "/.well-known/core")
    links = {link.target: link.attrs for link in parse_links(out.decode())}
    assert links["/obs"] == {"obs": True, "rt": "edgerm.test"}
    assert server.endpoint.stats.malformed == 0
    assert server.endpoint.stats.bad_options == 0
