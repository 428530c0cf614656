"""toolfleet's shared library: protocol models, the Service and Tool base classes, the
registry, errors, sessions, the usage ledger, dispatchers, the runtime and settings."""

from toolfleet.core.errors import ToolError, ToolfleetError
from toolfleet.core.protocol import (
    ErrorDiagnostic,
    ErrorKind,
    ImagePart,
    JsonPart,
    Observation,
    TablePart,
    TextPart,
    ToolSpec,
    Usage,
)
from toolfleet.core.service import Service
from toolfleet.core.settings import ServiceSettings, Settings
from toolfleet.core.tool import CallContext, Tool, ToolResult

__version__ = "0.1.0"

__all__ = [
    "CallContext",
    "ErrorDiagnostic",
    "ErrorKind",
    "ImagePart",
    "JsonPart",
    "Observation",
    "Service",
    "ServiceSettings",
    "Settings",
    "TablePart",
    "TextPart",
    "Tool",
    "ToolError",
    "ToolResult",
    "ToolSpec",
    "ToolfleetError",
    "Usage",
    "__version__",
]
