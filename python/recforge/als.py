"""implicit's module path ``implicit.als``: ``recforge.als.AlternatingLeastSquares`` is
``recforge.AlternatingLeastSquares``, so that code written against implicit 0.7's layout
(``import implicit``; ``implicit.als.AlternatingLeastSquares(...)``) runs with ``import recforge
as implicit`` (docs/python.md)."""

from .models import AlternatingLeastSquares

__all__ = ["AlternatingLeastSquares"]
