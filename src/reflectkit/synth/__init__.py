"""Reflection-format data synthesis with structure validation and answer verification (``reflectkit synthesize``)."""
