"""implicit's module path ``implicit.utils`` for what code written against it reaches there:
``ParameterWarning``, the warning of a converted input (a sparse matrix of another format,
values of another type), so that ``warnings.filterwarnings(..., category=
implicit.utils.ParameterWarning)`` runs with ``import recforge as implicit`` (docs/python.md)."""

from .models import ParameterWarning

__all__ = ["ParameterWarning"]
