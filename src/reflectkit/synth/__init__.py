"""Reflection-format data synthesis with structure validation and answer verification (``reflectkit synthesize``)."""

from reflectkit.synth.step import SynthOptions, SynthStep

__all__ = ["SynthOptions", "SynthStep"]
