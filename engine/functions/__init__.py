"""SQL functions: scalar (``scalar``, ``strings``, ``temporal``), ``aggregate``, ``window``."""

from engine.functions import scalar as _scalar  # noqa: F401  (importing registers the functions)
from engine.functions import strings as _strings  # noqa: F401
from engine.functions import temporal as _temporal  # noqa: F401
from engine.functions.registry import ScalarFunction, check_arity, exists, lookup

__all__ = ["ScalarFunction", "check_arity", "exists", "lookup"]
