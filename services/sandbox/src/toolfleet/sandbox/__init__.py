"""toolfleet's sandbox service: Python and bash interpreters in isolated, stateful sessions.

The service is :class:`toolfleet.sandbox.interpreters.Sandbox`, named by the
``toolfleet.services`` entry point ``sandbox``; adding a tool is one module and one line in its
``tools()`` list. Its HTTP routes (session files, SandboxFusion's ``/run_code``, verl-tool's
``/get_observation``) are in :mod:`toolfleet.sandbox.routes`, named by the ``toolfleet.routes``
entry point. This module stays light: the gateway imports the package to mount those routes.
"""
