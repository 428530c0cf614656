"""The HTTP routes the vision service adds to the gateway (the ``toolfleet.routes`` entry
point ``vision``): a session's media. They run in the gateway, as calls of the hidden
``media`` tool through the runtime, and import only the gateway's and core's modules (the
gateway's image holds this package without Pillow or PyAV)."""

from toolfleet.vision.routes import media

routers = [media.router]
