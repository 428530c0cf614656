"""toolfleet's search service: BM25, dense and web search over named indexes.

The service is :class:`toolfleet.search.service.SearchService`, named by the
``toolfleet.services`` entry point ``search``; adding a tool is one module and one line in its
``tools()`` list. Its HTTP routes (Search-R1's and FlashRAG's retrieval APIs) are in
:mod:`toolfleet.search.routes`, named by the ``toolfleet.routes`` entry point. This module
stays light: the gateway imports the package to mount those routes.
"""
