"""``sp.check_model``: what wrapping would do, including how each tensor's vertices would be drawn."""

from __future__ import annotations

from torch import nn

from .selection import FilterFn, ModelReport, select_by_names
from .selection import check_model as check_selection
from .vertex_init import describe_draw


def check_model(model: nn.Module, filter_fn: FilterFn | None = None) -> ModelReport:
    """The selection report of :func:`subspace_param.selection.check_model` (selected, skipped,
    shared, problems…) plus ``vertex_draws``: for each selected tensor, how the default
    ``init="independent"`` draws its extra vertices (see :class:`subspace_param.Independent`)."""
    report = check_selection(model, filter_fn)
    if report.selected:
        refs = select_by_names(model, report.selected)
        report.vertex_draws = {r.qualified_name: describe_draw(model, r) for r in refs}
    return report
