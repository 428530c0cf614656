"""toolfleet's shared library: protocol models, the Tool base class, the registry, sessions,
the usage ledger, dispatchers, the runtime and settings."""

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
from toolfleet.core.settings import Settings
from toolfleet.core.tool import CallContext, Tool, ToolError, ToolResult

__version__ = "0.1.0"

__all__ = [
    "CallContext",
    "ErrorDiagnostic",
    "ErrorKind",
    "ImagePart",
    "JsonPart",
    "Observation",
    "Settings",
    "TablePart",
    "TextPart",
    "Tool",
    "ToolError",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "__version__",
]
