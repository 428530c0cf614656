"""The HTTP routes the sandbox adds to the gateway (the ``toolfleet.routes`` entry point
``sandbox``): session files, the judge (``/v1/judge``), SandboxFusion's ``/run_code`` and
verl-tool's ``/get_observation``. They run in the gateway, as calls of the sandbox's tools
through the runtime, and import only the gateway's and core's modules and the languages
table (the gateway's image holds this package without the sandbox's libraries)."""

from toolfleet.sandbox.routes import files, judge, sandbox_fusion, verl_tool

routers = [files.router, judge.router, sandbox_fusion.router, verl_tool.router]
