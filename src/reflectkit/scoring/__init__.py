"""Data quality scoring with a student model: IFD, r-IFD, perplexities, coherence, gzip ratio.

See :mod:`reflectkit.scoring.api` for the Python API and ``docs/scoring.md`` for the definitions.
"""
