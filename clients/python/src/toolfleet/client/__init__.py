"""The toolfleet Python client: what trainers import to call a toolfleet gateway."""

from toolfleet.client.http import GatewayError, ToolfleetClient

__all__ = ["GatewayError", "ToolfleetClient"]
