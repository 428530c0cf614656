"""toolfleet's mcp service: MCP servers as tool backends, tool retrieval, models as tools."""
