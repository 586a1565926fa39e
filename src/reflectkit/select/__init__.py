"""Data selection from student scores: Selective Reflection-Tuning, Cherry top-k%, generic filters."""

from reflectkit.select.funnel import Funnel, Stage
from reflectkit.select.step import DROPPED, METHODS, SELECTED, SelectOptions, SelectStep

__all__ = ["Funnel", "Stage", "SelectOptions", "SelectStep", "METHODS", "SELECTED", "DROPPED"]
