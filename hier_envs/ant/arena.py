"""The ant-pinpad arena, built at run time from Gymnasium's ant model with ``mujoco.MjSpec``.

The floor is a ``size`` x ``size`` grid of tiles whose colours change with each layout
(only ``geom_rgba`` and ``geom_pos`` change: no recompilation), a dark block marks each
wall cell, and four walls bound the arena, ``MARGIN`` m beyond the grid so that an ant
starting in a border cell never has a leg in a wall (off the grid, the torso counts as
being in the nearest border cell). Cell ``(row, col)`` has its centre at
``x = (col + 0.5 - size / 2) * cell_size`` and ``y = (size / 2 - row - 0.5) * cell_size``:
row 0 is the far (+y) side, as in the overview camera's picture.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import cached_property

import mujoco
import numpy as np

from hier_envs.grid.render import FLOOR, WALL, colour_rgb

ANT_XML = importlib.resources.files("gymnasium.envs.mujoco") / "assets" / "ant.xml"
TILE_HEIGHT = 0.005
BLOCK_HEIGHT = 0.15
BOUNDARY_HEIGHT = 0.5
HIDDEN = -10.0  # z of wall blocks not in use
MARGIN = 1.25  # m of floor between the grid and the boundary: an outstretched leg reaches 1.1 m


@dataclass(frozen=True)
class Arena:
    """A compiled arena and the ids of the geoms that show a layout."""

    model: mujoco.MjModel
    size: int
    cell_size: float
    tile_geoms: np.ndarray  # (size * size,) geom id of each cell's tile
    block_geoms: np.ndarray  # (num_walls,) geom id of each wall's block

    @property
    def reach(self) -> float:
        """Half-width of the floor inside the boundary walls (m)."""
        return self.size * self.cell_size / 2 + MARGIN

    @cached_property
    def centres(self) -> np.ndarray:
        """``(size * size, 2)`` xy centre of every cell."""
        rows, cols = np.divmod(np.arange(self.size**2), self.size)
        half = self.size / 2
        return np.stack([(cols + 0.5 - half), (half - rows - 0.5)], axis=1) * self.cell_size

    def show_layout(self, walls: tuple[int, ...], colours: tuple[int, ...]) -> None:
        """Colour the tiles and place the wall blocks of a layout."""
        model, centres = self.model, self.centres
        model.geom_rgba[self.tile_geoms] = _rgba(FLOOR)
        for colour, cell in enumerate(colours):
            model.geom_rgba[self.tile_geoms[cell]] = _rgba(colour_rgb(colour))
        model.geom_pos[self.block_geoms, 2] = HIDDEN
        for block, cell in zip(self.block_geoms, walls):
            model.geom_rgba[self.tile_geoms[cell]] = _rgba(WALL)
            model.geom_pos[block] = (*centres[cell], BLOCK_HEIGHT)


def build_arena(size: int, cell_size: float, num_walls: int) -> Arena:
    """Compile the ant on a ``size`` x ``size`` floor of ``cell_size`` m cells."""
    spec = mujoco.MjSpec.from_file(str(ANT_XML))
    spec.delete(spec.geom("floor"))
    # MuJoCo's recommended integrator: about 3x faster than the model's RK4 at the same
    # timestep, and stable with the ant's joint damping.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    half = size * cell_size / 2
    reach = half + MARGIN
    world = spec.worldbody
    world.add_geom(
        name="ground",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[reach + 1, reach + 1, 0.1],
        rgba=[0.25, 0.25, 0.28, 1],
        conaffinity=1,
        condim=3,
    )
    tiles = []
    for cell in range(size * size):
        row, col = divmod(cell, size)
        tiles.append(
            world.add_geom(
                name=f"tile_{cell}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[cell_size * 0.48, cell_size * 0.48, TILE_HEIGHT],
                pos=[(col + 0.5 - size / 2) * cell_size, (size / 2 - row - 0.5) * cell_size, 0],
                contype=0,
                conaffinity=0,
            )
        )
    blocks = [
        world.add_geom(
            name=f"wall_block_{i}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[cell_size * 0.45, cell_size * 0.45, BLOCK_HEIGHT],
            pos=[0, 0, HIDDEN],
            rgba=_rgba(WALL),
            contype=0,
            conaffinity=0,
        )
        for i in range(num_walls)
    ]
    for i, (x, y, sx, sy) in enumerate(
        [
            (0, reach + 0.1, reach + 0.2, 0.1),
            (0, -reach - 0.1, reach + 0.2, 0.1),
            (reach + 0.1, 0, 0.1, reach + 0.2),
            (-reach - 0.1, 0, 0.1, reach + 0.2),
        ]
    ):
        world.add_geom(
            name=f"boundary_{i}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[sx, sy, BOUNDARY_HEIGHT],
            pos=[x, y, BOUNDARY_HEIGHT],
            rgba=[0.55, 0.55, 0.6, 1],
            conaffinity=1,
            condim=3,
        )
    distance = 3.0 * reach
    world.add_camera(
        name="overview",
        pos=[0, -0.33 * distance, 0.95 * distance],
        xyaxes=[1, 0, 0, 0, 0.95, 0.33],
    )
    spec.visual.global_.offwidth = 960
    spec.visual.global_.offheight = 960
    model = spec.compile()
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, g.name) for g in tiles + blocks]
    return Arena(
        model,
        size,
        float(cell_size),
        np.array(ids[: len(tiles)]),
        np.array(ids[len(tiles) :], dtype=int),
    )


def _rgba(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.array([*np.divide(rgb, 255.0), 1.0])


def open_floor_model() -> mujoco.MjModel:
    """The ant alone on Gymnasium's open floor, with the arena's integrator."""
    spec = mujoco.MjSpec.from_file(str(ANT_XML))
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    return spec.compile()
