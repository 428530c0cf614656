"""toolfleet's tools as verl function tools: name this file in
``actor_rollout_ref.rollout.multi_turn.function_tool_path`` (verl >= 0.8). The gateway is
``$TOOLFLEET_URL`` (default http://127.0.0.1:8000); ``TOOLFLEET_TOOLS`` picks the tools
(comma-separated; default python,search). See docs/trainers/verl.md."""

import os

from toolfleet.client import ToolfleetClient
from toolfleet.client.callables import tool_functions
from verl.tools.function_tool import function_tool

client = ToolfleetClient()
names = os.environ.get("TOOLFLEET_TOOLS", "python,search").split(",")
for fn in tool_functions(client, [n.strip() for n in names if n.strip()]):
    function_tool(fn)
