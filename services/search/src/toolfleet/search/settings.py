"""Settings of the search service: ``TOOLFLEET_SEARCH_*`` environment variables, or the
``[search]`` table of the TOML config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from toolfleet.core.settings import ServiceSettings


class SearchSettings(ServiceSettings):
    """Which indexes are served, limits, costs, and web search."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_SEARCH_", extra="forbid")
    section = "search"

    indexes: dict[str, Path] = Field(
        default_factory=dict,
        description="Index name -> directory made by `toolfleet search build` (JSON in the "
        'environment: TOOLFLEET_SEARCH_INDEXES=\'{"wiki": "/data/wiki-index"}\').',
    )
    default_index: str | None = Field(
        default=None, description="Index used when a call names none (default: the first)."
    )
    default_top_k: int = Field(default=3, ge=1, description="Passages per query if unset.")
    max_top_k: int = Field(
        default=1000,
        ge=1,
        description="Largest top_k a call may ask for (Search-R1 and FlashRAG setups ask for "
        "up to hundreds; max_passages_per_call bounds a response).",
    )
    max_queries: int = Field(default=256, ge=1, description="Queries in one call at most.")
    max_query_chars: int = Field(default=2000, ge=1, description="Longest query accepted.")
    max_passage_chars: int = Field(
        default=4000,
        ge=100,
        description="Passage text (web: snippet) longer than this is cut, in the text and the "
        "data of a response, and the response says so.",
    )
    max_passages_per_call: int = Field(
        default=2048,
        ge=1,
        description="Queries x top_k one call may ask for (bounds a response's size with "
        "max_passage_chars).",
    )
    cost_per_query: float = Field(default=1.0, ge=0, description="Usage cost of one query.")
    threads: int = Field(default=2, ge=1, description="Searches running at once (CPU bound).")
    processes: int = Field(
        default=2,
        ge=0,
        description="Worker processes a batch of 8 or more queries is split over (0: none).",
    )
    gpu: bool = Field(
        default=False,
        description="Embed queries on a CUDA GPU (onnxruntime-gpu) and search dense indexes "
        "there (faiss-gpu); both must be installed in place of the CPU packages.",
    )

    web_provider: Literal["serper", "brave", "tavily"] | None = Field(
        default=None, description="Web search provider; the web_search tool exists only if set."
    )
    web_api_key: str | None = Field(default=None, description="The provider's API key.")
    web_endpoint: str | None = Field(
        default=None, description="Override of the provider's URL (a proxy, or a test stand-in)."
    )
    web_cost_per_query: float = Field(default=1.0, ge=0, description="Usage cost of a web query.")
    web_cache_ttl_s: float = Field(default=3600.0, ge=0, description="Web results kept this long.")
    web_cache_entries: int = Field(default=10000, ge=0, description="Web results kept at most.")
    web_rate_per_s: float = Field(default=5.0, gt=0, description="Web queries per second at most.")
    web_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one web request.")
