"""toolfleet's gateway: the HTTP API (REST v1, later MCP and compat routes) in front of the
runtime. Build an app with :func:`toolfleet.gateway.app.create_app`."""
