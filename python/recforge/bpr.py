"""implicit's module path ``implicit.bpr``: ``recforge.bpr.BayesianPersonalizedRanking`` is
``recforge.BayesianPersonalizedRanking`` (see recforge.als)."""

from .models import BayesianPersonalizedRanking

__all__ = ["BayesianPersonalizedRanking"]
