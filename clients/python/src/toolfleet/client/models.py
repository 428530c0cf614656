"""Answers of the gateway that are not protocol models: a session's files."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FileInfo(BaseModel):
    """A file in a session's working directory."""

    path: str = Field(description="Path relative to the session's working directory.")
    size: int = Field(description="Size in bytes.")


class FileListing(BaseModel):
    """Every file of a session's working directory (``GET /v1/sessions/{id}/files``)."""

    files: list[FileInfo] = Field(default_factory=list, description="Files, with their sizes.")
    truncated: bool = Field(default=False, description="True when the listing was cut short.")

    def paths(self) -> list[str]:
        """The files' paths."""
        return [f.path for f in self.files]
