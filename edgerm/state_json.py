"""The JSON form of the master's operator view (`ClusterState`): one definition shared by
`edgerm agents|frameworks|tasks|offers --json` and the master's HTTP API (`/api/v1/...`), so
both show the same items with the same names.

Names are the protobuf field names (`agent_id`, `mem_mb`, `last_seen`), enums by name
(`TASK_RUNNING`, `WASM`), fields at their default value left out (protobuf's JSON mapping).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from edgerm.wire import pb

__all__ = ["LISTINGS", "item_json", "listing_json", "state_json"]

# The lists of a ClusterState, as the CLI's commands and the API's paths name them.
LISTINGS = ("agents", "frameworks", "tasks", "offers")


def item_json(item: Message) -> dict[str, Any]:
    """One agent, framework, task or offer of a ClusterState as JSON."""
    return json_format.MessageToDict(item, preserving_proto_field_name=True)


def listing_json(state: pb.ClusterState, listing: str) -> list[dict[str, Any]]:
    """`state.<listing>` (one of LISTINGS) as a list of JSON objects."""
    return [item_json(m) for m in getattr(state, listing)]


def state_json(state: pb.ClusterState) -> dict[str, Any]:
    """The whole ClusterState: every listing (also when empty), `now` and `version`."""
    out: dict[str, Any] = {name: listing_json(state, name) for name in LISTINGS}
    out["now"] = state.now
    out["version"] = state.version
    return out
