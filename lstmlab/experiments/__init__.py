"""Experiments built on the trainer: comparing cells on a task (`compare`) and the
gradient that reaches each earlier step (`gradflow`)."""
