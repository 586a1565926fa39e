"""Honest evaluation: generation, GSM8K / IFEval scoring, both-order pairwise judges, a reflective judge, judge
meta-evaluation, Self-Refine at inference time, and bootstrap confidence intervals on every rate.

The Python API is in :mod:`reflectkit.evaluate.api`; the commands in :mod:`reflectkit.evaluate.cli`.
This module stays light (no heavy imports).
"""
