"""The lakehouse SQL engine: ``engine.connect(warehouse).sql(query)``."""

from engine.config import Config
from engine.session import Result, Session, connect

__all__ = ["Config", "Result", "Session", "connect"]
