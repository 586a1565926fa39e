"""Supervised fine-tuning of a student with TRL + PEFT (``reflectkit train``)."""

from reflectkit.train.step import TrainOptions, TrainStep

__all__ = ["TrainOptions", "TrainStep"]
