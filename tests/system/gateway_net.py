"""The gateway topology of the system tests: the NAT'd uplink of `netns.Topology`, with the
constrained devices one hop further, on a link of their own behind the gateway:

    core (master, frameworks) ── router (NAT, loss, tbf) ── gw (10.78.0.2 | 10.79.0.1) ── dev

- `core`, `router`: as in netns.py; the router's impairments are the *uplink*'s.
- `gw` (the `edge` of the base topology) holds the gateway (`edgerm-agent` with a `[gateway]`
  section); it does not forward (ip_forward=0), so the devices have no route to the master at
  all: everything they say goes through the gateway process.
- `dev` (10.79.0.2/24) holds the MicroPython agents and the POSIX C agent. It has no default
  route: only 10.79.0.0/24 is reachable, i.e. the gateway's device-side address.

Namespace names carry the test run's pid (`edgerm-sys-PID-g…`), so the stale-namespace sweep of
netns.py removes them after a killed run too, and they never clash with the base topology.
`uplink_block_bytes_down()` counts what the master sent towards the gateway in datagrams of
`LARGE_DATAGRAM` bytes or more (an accounting rule on the router, before the loss): the ones
carrying module blocks (a block is 512 B; a batch of heartbeat and status answers
for a handful of devices is under 250 B).
"""

from __future__ import annotations

from dataclasses import dataclass

from .netns import PREFIX, Topology, _run

GW_DEV_IP = "10.79.0.1"
DEV_IP = "10.79.0.2"
DEV_NET = "10.79.0.0/24"
LARGE_DATAGRAM = 400


@dataclass
class GatewayTopology(Topology):
    """`build()` then `destroy()` (always). `edge` is the gateway's namespace, `devices` the
    devices'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        base = f"{PREFIX}-{self.tag}"
        self.core, self.router, self.edge = f"{base}-gcore", f"{base}-grouter", f"{base}-ggw"
        self.devices = f"{base}-gdev"
        short = f"es{self.tag}"[:11]
        self.gw_dev_if, self.dev_if = f"{short}g", f"{short}d"

    @property
    def gateway(self) -> str:
        return self.edge

    def build(self) -> GatewayTopology:
        super().build()
        _run(["ip", "netns", "add", self.devices])
        self.built.append(self.devices)
        _run(["ip", "-n", self.devices, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.edge, "link", "add", self.gw_dev_if, "type", "veth", "peer",
              "name", self.dev_if, "netns", self.devices])
        for ns, dev, addr in ((self.edge, self.gw_dev_if, f"{GW_DEV_IP}/24"),
                              (self.devices, self.dev_if, f"{DEV_IP}/24")):
            _run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
        # The gateway is a host, not a router: nothing from the devices is forwarded.
        self.sh(self.edge, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        # Byte accounting of the uplink, master → gateway, ahead of the impairments.
        self.sh(self.router, "iptables", "-N", "uplink_down")
        self.sh(self.router, "iptables", "-I", "FORWARD", "1", "-i", self.router_core_if,
                "-o", self.router_edge_if, "-j", "uplink_down")
        self.sh(self.router, "iptables", "-A", "uplink_down", "-m", "length", "--length",
                f"{LARGE_DATAGRAM}:65535")
        return self

    def uplink_block_bytes_down(self) -> int:
        """Bytes (IP packets) the master's side sent towards the gateway so far in datagrams of
        LARGE_DATAGRAM bytes or more."""
        out = self.sh(self.router, "iptables", "-L", "uplink_down", "-v", "-n", "-x").stdout
        [rule] = [line.split() for line in out.splitlines()[2:] if line.strip()]
        return int(rule[1])
