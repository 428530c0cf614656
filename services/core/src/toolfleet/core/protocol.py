"""The wire protocol's models, as the services import them.

They live in ``toolfleet.protocol``, which ships with the light client (``toolfleet-client``:
httpx and pydantic only) so that a trainer installs them without the services' libraries;
this module re-exports them, so ``toolfleet.core.protocol`` stays the services' import path.
"""

from toolfleet.protocol import (
    BatchRequest,
    BatchResponse,
    CallOptions,
    CallRequest,
    ContentPart,
    ErrorDiagnostic,
    ErrorKind,
    ImagePart,
    Invocation,
    JsonPart,
    Observation,
    SessionCreate,
    SessionFork,
    SessionInfo,
    TablePart,
    TextPart,
    ToolCall,
    ToolSpec,
    ToolUsage,
    TrajectoryUsage,
    Usage,
)

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "CallOptions",
    "CallRequest",
    "ContentPart",
    "ErrorDiagnostic",
    "ErrorKind",
    "ImagePart",
    "Invocation",
    "JsonPart",
    "Observation",
    "SessionCreate",
    "SessionFork",
    "SessionInfo",
    "TablePart",
    "TextPart",
    "ToolCall",
    "ToolSpec",
    "ToolUsage",
    "TrajectoryUsage",
    "Usage",
]
