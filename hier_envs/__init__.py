"""Hierarchical sparse-reward Gymnasium environments (arXiv 2512.20605).

Importing the package registers ``HierGrid-v0`` and ``HierAnt-v0``;
``gym.make("hier_envs:HierGrid-v0")`` imports it on demand.
"""

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping


def headless_gl_backend(
    environ: Mapping[str, str], platform: str, find_library: Callable[[str], str | None]
) -> str | None:
    """The ``MUJOCO_GL`` to set: ``"egl"`` on Linux with no display, or ``"disable"`` if
    EGL is missing too (MuJoCo's import fails on an EGL backend without the library:
    simulation still works, rendering cannot); None to leave MuJoCo's own choice."""
    if "MUJOCO_GL" in environ or not platform.startswith("linux"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return "egl" if find_library("EGL") else "disable"


# MuJoCo reads this when it is first imported, so it is set before anything here does.
_backend = headless_gl_backend(os.environ, sys.platform, ctypes.util.find_library)
if _backend is not None:
    os.environ["MUJOCO_GL"] = _backend

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
