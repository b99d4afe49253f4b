"""What this host offers: detected cpus, memory and disk (capped and reserved per the config),
configured ports and devices, and attributes (os, arch, hostname, executors, labels)."""

from __future__ import annotations

import os
import platform
import shutil
import socket

from edgerm.wire import pb
from edgerm_agent.config import AgentConfig

__all__ = ["detect_resources", "detect_attributes", "EXECUTOR_NAMES"]

EXECUTOR_NAMES = {"docker": pb.DOCKER, "wasm": pb.WASM}
_DEVICE_KINDS = {"sensor": pb.SENSOR, "actuator": pb.ACTUATOR, "other": pb.OTHER}


def _detected_cpus() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return float(os.cpu_count() or 1)


def _detected_mem_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _detected_disk_mb(path: str) -> float:
    try:
        return shutil.disk_usage(path).free / (1024.0 * 1024.0)
    except OSError:
        return 0.0


def _offer(detected: float, cap: float | None, reserved: float) -> float:
    value = detected if cap is None else min(detected, cap)
    return max(0.0, round(value - reserved, 3))


def detect_resources(config: AgentConfig) -> pb.Resources:
    """Schedulable totals: min(detected, cap) - reserved, plus ports and devices."""
    work = config.work_dir if config.work_dir.exists() else config.work_dir.parent
    res = pb.Resources(
        cpus=_offer(_detected_cpus(), config.cpus, config.reserved_cpus),
        mem_mb=_offer(_detected_mem_mb(), config.mem_mb, config.reserved_mem_mb),
        disk_mb=_offer(_detected_disk_mb(str(work)), config.disk_mb, config.reserved_disk_mb),
    )
    for begin, end in config.ports:
        res.ports.add(begin=begin, end=end)
    for dev in config.devices:
        # `path` stays on the agent: the master never tells frameworks host paths.
        res.devices.add(name=dev.name, kind=_DEVICE_KINDS[dev.kind], shares=dev.shares,
                        unit=dev.unit)
    return res


def detect_attributes(config: AgentConfig, executors: list[str]) -> list[pb.Attribute]:
    attrs = [
        pb.Attribute(name="os", text=f"{platform.system().lower()}-{platform.release()}"),
        pb.Attribute(name="arch", text=platform.machine()),
        pb.Attribute(name="hostname", text=socket.gethostname()),
    ]
    ex = pb.Attribute(name="executors")
    ex.set.items.extend(executors)
    attrs.append(ex)
    for key in sorted(config.labels):
        attrs.append(pb.Attribute(name=key, text=config.labels[key]))
    return attrs
