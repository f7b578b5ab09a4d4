"""Hierarchical sparse-reward Gymnasium environments (arXiv 2512.20605).

Importing the package registers ``HierGrid-v0`` and ``HierAnt-v0``;
``gym.make("hier_envs:HierGrid-v0")`` imports it on demand.
"""

import os
import sys

# Headless MuJoCo rendering: with no display, render through EGL. MuJoCo reads this
# when it is first imported, so it is set before anything here imports mujoco.
if sys.platform.startswith("linux") and not (
    os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
):
    os.environ.setdefault("MUJOCO_GL", "egl")

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

if "HierGrid-v0" not in registry:
    register(
        id="HierGrid-v0",
        entry_point="hier_envs.grid.env:HierGridEnv",
        vector_entry_point="hier_envs.grid.vector:HierGridVectorEnv",
    )
if "HierAnt-v0" not in registry:
    register(id="HierAnt-v0", entry_point="hier_envs.ant.env:HierAntEnv")
