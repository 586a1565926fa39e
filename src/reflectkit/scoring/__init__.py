"""Data quality scoring with a student model: IFD, r-IFD, perplexities, coherence, gzip ratio.

Steps: :class:`reflectkit.scoring.step.ScoreStep` (``score``) and :class:`reflectkit.scoring.stats.StatsStep`
(``stats``). See :mod:`reflectkit.scoring.api` for the Python API and ``docs/scoring.md`` for the definitions.
"""
