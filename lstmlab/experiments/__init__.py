"""Experiments built on the trainer and the modules: comparing cells on a task
(`compare`), the gradient that reaches each earlier step (`gradflow`), the speed and
memory of the backends against torch's modules (`speed`), and the pictures of them
(`plots`, which needs matplotlib: `pip install 'lstmlab[plots]'`).

Nothing is imported here, so that `lstmlab.experiments.speed` runs without matplotlib.
"""
