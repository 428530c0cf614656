"""The HTTP routes the sandbox adds to the gateway (the ``toolfleet.routes`` entry point
``sandbox``): session files, SandboxFusion's ``/run_code`` and verl-tool's
``/get_observation``. They run in the gateway, as calls of the sandbox's tools through the
runtime, and import only the gateway's and core's modules (the gateway's image holds this
package without the sandbox's libraries)."""

from toolfleet.sandbox.routes import files, sandbox_fusion, verl_tool

routers = [files.router, sandbox_fusion.router, verl_tool.router]
