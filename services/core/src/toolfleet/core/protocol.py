"""The wire protocol's models, as the services import them.

They live in ``toolfleet.protocol``, which ships with the light client (``toolfleet-client``:
httpx and pydantic only) so that a trainer installs them without the services' libraries;
this module re-exports every one of them, so ``toolfleet.core.protocol`` stays the services'
import path.
"""

from toolfleet.protocol import *  # noqa: F403  (the models its __all__ names)
from toolfleet.protocol import __all__ as __all__
