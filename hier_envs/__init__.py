"""Hierarchical sparse-reward Gymnasium environments (arXiv 2512.20605).

Importing the package registers ``HierGrid-v0``; ``gym.make("hier_envs:HierGrid-v0")``
imports it on demand.
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

if "HierGrid-v0" not in registry:
    register(
        id="HierGrid-v0",
        entry_point="hier_envs.grid.env:HierGridEnv",
        vector_entry_point="hier_envs.grid.vector:HierGridVectorEnv",
    )
