"""The lakehouse SQL engine: ``engine.connect(warehouse).sql(query)``."""

from engine.config import Config
from engine.session import Result, Session, connect
from engine.training import FeatureSource, training_set

__all__ = ["Config", "FeatureSource", "Result", "Session", "connect", "training_set"]
