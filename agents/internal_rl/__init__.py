"""Internal RL (arXiv 2512.20605): expert data, a causal base model, probes and controllers
of its residual stream, then a metacontroller and RL in its latent space.

Run it with ``python -m agents.internal_rl --env HierGrid-v0`` (see ``--help``).
"""
