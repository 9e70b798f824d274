"""The measured Pareto search behind ``modelcrunch optimize``.

``space`` (what can be changed, per layer) → ``build`` (one candidate, prune → factorize →
quantize, in memory) → ``measure`` (held-out quality, interleaved latency, size, RAM) → ``store``
(Optuna study: the cache of measured candidates and the sensitivity tables) → ``strategy``
(sensitivity tables, greedy path, multi-objective sampler) → ``frontier`` (the Pareto front and
the chosen point) → ``html`` (report.html). ``api.optimize`` runs it all.

Importing this package does not import Optuna; ``api`` and ``store`` do.
"""
