"""The HTTP routes the search service adds to the gateway (the ``toolfleet.routes`` entry
point ``search``): Search-R1's ``/retrieve`` and FlashRAG's ``/search`` and ``/batch_search``.
They run in the gateway, as calls of the ``search`` tool through the runtime, and import only
the gateway's and core's modules (the gateway's image holds this package without the search
libraries)."""

from toolfleet.search.routes import compat

routers = [compat.router]
