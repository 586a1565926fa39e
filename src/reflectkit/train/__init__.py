"""Supervised fine-tuning of a student with TRL + PEFT (``reflectkit train``)."""
