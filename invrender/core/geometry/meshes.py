"""Triangle meshes: reading, checking and writing, including multi-material `.rec` meshes.

A `Mesh` holds vertices (V, 3) float64 in physical units (x, y, z), faces (F, 3) int64 and, for a
multi-material mesh, the materials on the two sides of every face (F, 2), 0 being the exterior.
`.obj`, `.ply`, `.off`, `.stl` are read with trimesh (duplicated seam vertices merged); `.rec` is
the text format of deltaMic: the vertex count, `x y z` lines, the face count, `i j k m1 m2` lines.
Writers put one PLY per cell beside a `.rec` (`write_cell_meshes`), and a PLY in an anatomical frame
says which in its header (`write_mesh(..., space="RAS")`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from invrender.core.io import InputError, atomic_path

if TYPE_CHECKING:
    import trimesh

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".rec")
#: Anatomical frames a PLY can say its coordinates are in (3D Slicer's `SPACE=` header comment).
SPACES = ("RAS", "LPS")
#: Bytes of a PLY searched for its header (a header is a few hundred).
MAX_PLY_HEADER = 65536

#: Larger vertex coordinates (physical units) are refused: no image is that large, and trimesh's
#: merging of vertices rounds coordinates to 1e-8 in int64, which overflows from about 9e10.
MAX_COORDINATE = 1e9


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float64, x y z
    faces: np.ndarray  # (F, 3) int64
    materials: np.ndarray | None = None  # (F, 2) int64: the cells on each side, 0 = exterior

    @property
    def face_weights(self) -> np.ndarray:
        """Fluorophore weight per face: 2 on an interface between two cells (a double membrane)."""
        if self.materials is None:
            return np.ones(len(self.faces))
        return np.where((self.materials > 0).all(axis=1), 2.0, 1.0)

    @property
    def n_cells(self) -> int:
        return 1 if self.materials is None else int(self.materials.max())

    def to_trimesh(self, cell: int | None = None) -> trimesh.Trimesh:
        """The surface (or with `cell`, that cell's closed surface) as a `trimesh.Trimesh`."""
        import trimesh

        faces = self.faces if cell is None else self.cell_faces(cell)
        return trimesh.Trimesh(self.vertices, faces, process=False)

    def cell_faces(self, cell: int) -> np.ndarray:
        """(F_c, 3) the faces that bound cell `cell` (1..n_cells): its closed surface."""
        if self.materials is None:
            return self.faces
        return self.faces[(self.materials == cell).any(axis=1)]


def read_mesh(path: str | Path) -> Mesh:
    """Read and check a mesh; InputError (naming the file) if it is unreadable or unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "mesh file not found")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(path, f"unknown mesh format {suffix!r}; expected one of {', '.join(MESH_SUFFIXES)}")
    mesh = _read_rec(path) if suffix == ".rec" else _read_with_trimesh(path)
    check_mesh(path, mesh)
    return mesh


def _read_with_trimesh(path: Path) -> Mesh:
    import trimesh

    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for malformed files
        raise InputError(path, f"not a readable mesh ({type(err).__name__}: {err})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError(path, "the mesh is empty (no triangles)")
    check_vertices(path, np.asarray(loaded.vertices))  # before merging, which needs sane coordinates
    loaded.merge_vertices(merge_tex=True, merge_norm=True)  # texture seams duplicate vertices
    return Mesh(np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64))


def _read_rec(path: Path) -> Mesh:
    """The deltaMic text format; InputError for malformed text, negative counts or materials."""
    try:
        tokens = path.read_text(encoding="utf-8").split()
        n_vertices = _count(path, "vertex", tokens[0])
        vertices = np.array(tokens[1 : 1 + 3 * n_vertices], dtype=np.float64).reshape(n_vertices, 3)
        n_faces = _count(path, "face", tokens[1 + 3 * n_vertices])
        rows = np.array(tokens[2 + 3 * n_vertices : 2 + 3 * n_vertices + 5 * n_faces], dtype=np.int64).reshape(
            n_faces, 5
        )
    except (IndexError, ValueError, OverflowError, UnicodeDecodeError) as err:
        raise InputError(
            path, f"not a readable .rec mesh (vertex count, x y z lines, face count, i j k m1 m2 lines): {err}"
        ) from None
    if n_faces == 0:
        raise InputError(path, "the mesh is empty (no triangles)")
    if rows[:, 3:].min() < 0:
        raise InputError(
            path, f"material {int(rows[:, 3:].min())} is negative: materials are 0 (outside) or a cell 1, 2, ..."
        )
    return Mesh(vertices, rows[:, :3], rows[:, 3:])


def _count(path: Path, what: str, token: str) -> int:
    count = int(token)
    if count < 0:
        raise InputError(path, f"{what} count {count} is negative")
    return count


def check_mesh(path: Path, mesh: Mesh) -> None:
    """Vertices (V, 3) and triangles (F, 3); finite vertices, faces that index existing vertices,
    some area, a closed surface (every edge shared by an even number of faces: 2 on a manifold, 3
    where cells meet)."""
    if len(mesh.faces) == 0:
        raise InputError(path, "the mesh is empty (no triangles)")
    vertices, faces = mesh.vertices.shape, mesh.faces.shape
    if len(vertices) != 2 or vertices[1] != 3 or len(faces) != 2 or faces[1] != 3:
        raise InputError(path, f"vertices {vertices} and faces {faces} must be (V, 3), (F, 3)")
    check_vertices(path, mesh.vertices)
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        bad = int(mesh.faces.min() if mesh.faces.min() < 0 else mesh.faces.max())
        raise InputError(
            path, f"a face refers to vertex {bad}, but the {len(mesh.vertices)} vertices are numbered from 0"
        )
    corners = mesh.vertices[mesh.faces]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if (areas <= 0).all():  # a few degenerate faces (e.g. at cell junctions) render as nothing and are kept
        raise InputError(path, "every face has zero area")
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    if mesh.materials is None and (counts != 2).any():
        raise InputError(
            path,
            f"the surface is not closed and manifold: {int((counts != 2).sum())} edge(s) are not shared by exactly 2 "
            "faces",
        )
    if mesh.materials is not None and (counts < 2).any():
        raise InputError(path, f"the surface is not closed: {int((counts < 2).sum())} edge(s) belong to a single face")


def check_vertices(path: Path, vertices: np.ndarray) -> None:
    """Vertex coordinates (V, 3) finite and within +-MAX_COORDINATE physical units."""
    if not np.isfinite(vertices).all():
        raise InputError(path, "vertex coordinates contain NaN or infinity")
    if len(vertices) and np.abs(vertices).max() > MAX_COORDINATE:
        raise InputError(
            path, f"vertex coordinate {np.abs(vertices).max():.3g} is absurdly large (beyond +-{MAX_COORDINATE:g})"
        )


def check_inside(path: Path, mesh: Mesh, extent_xyz: np.ndarray) -> None:
    """Every vertex within the image's box [0, extent] (physical units, x y z)."""
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    if (low < 0).any() or (high > extent_xyz).any():
        raise InputError(
            path,
            f"the mesh ({_box(low, high)}) is outside the image ({_box(np.zeros(3), extent_xyz)}, physical units x y "
            "z)",
        )


def _box(low: np.ndarray, high: np.ndarray) -> str:
    return " x ".join(f"{a:.3g}..{b:.3g}" for a, b in zip(low, high))


def write_mesh(path: str | Path, mesh: Mesh, space: str | None = None) -> None:
    """`.rec` for a multi-material mesh, else by suffix (`.ply`, `.obj`) through trimesh; atomic.

    space: the anatomical frame of the coordinates ("RAS" or "LPS"), said in a PLY's header as the
    comment `SPACE=RAS` that 3D Slicer reads (it takes a PLY without one for LPS); None for
    coordinates in no anatomical frame (a microscope's x, y, z). ValueError for another format.
    """
    path = Path(path)
    if space is not None and (space not in SPACES or path.suffix.lower() != ".ply"):
        raise ValueError(f"space {space!r} for {path.name}: a PLY's coordinates are in one of {', '.join(SPACES)}")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".rec":
            materials = mesh.materials if mesh.materials is not None else np.tile([1, 0], (len(mesh.faces), 1))
            lines = [str(len(mesh.vertices))] + [f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices]
            lines += [str(len(mesh.faces))] + [" ".join(map(str, (*f, *m))) for f, m in zip(mesh.faces, materials)]
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            import trimesh

            data = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(
                file_type=path.suffix.lower().lstrip(".")
            )
            data = data if isinstance(data, bytes) else data.encode("utf-8")
            if space is not None:  # with the header's comments, before its first element
                data = data.replace(b"\nelement ", f"\ncomment SPACE={space}\nelement ".encode(), 1)
            tmp.write_bytes(data)


def ply_space(path: str | Path) -> str | None:
    """The anatomical frame a PLY's header says its coordinates are in (`comment SPACE=RAS` or
    `SPACE=LPS`, as `write_mesh` writes it and 3D Slicer reads it), None when it says none."""
    with open(path, "rb") as file:
        header = file.read(MAX_PLY_HEADER).split(b"end_header", 1)[0]
    for line in header.decode("ascii", errors="replace").splitlines():
        if line.startswith("comment "):
            for space in SPACES:
                if f"SPACE={space}" in line:
                    return space
    return None


def cell_mesh_paths(path: str | Path, n_cells: int) -> list[Path]:
    """The PLYs beside a `.rec` (`<stem>.rec` -> `<stem>.cell1.ply`, ...), one per cell: what common
    viewers open, as they do not read `.rec`."""
    path = Path(path)
    return [path.with_name(f"{path.stem}.cell{cell}.ply") for cell in range(1, n_cells + 1)]


def cell_surface(mesh: Mesh, cell: int) -> Mesh:
    """Cell `cell`'s closed surface alone: its faces, and only the vertices they use (renumbered)."""
    faces = mesh.cell_faces(cell)
    used, renumbered = np.unique(faces, return_inverse=True)
    return Mesh(mesh.vertices[used], renumbered.reshape(faces.shape))


def write_cell_meshes(path: str | Path, mesh: Mesh) -> list[Path]:
    """Write every cell of a multi-material mesh as a PLY beside its `.rec` `path` (`cell_mesh_paths`);
    their paths."""
    paths = cell_mesh_paths(path, mesh.n_cells)
    for cell, cell_path in enumerate(paths, start=1):
        write_mesh(cell_path, cell_surface(mesh, cell))
    return paths
