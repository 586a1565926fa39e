"""Data selection from student scores: Selective Reflection-Tuning, Cherry top-k%, generic filters."""
