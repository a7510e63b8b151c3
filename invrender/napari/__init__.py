"""The napari plugin: readers and writers of invrender's files, and widgets that run its methods.

An integration layer over the Python API, like the command line. The manifest is `napari.yaml`
beside this file (registered through the `napari.manifest` entry point). The conversions between
invrender's files and napari's layers are plain functions returning napari "layer data" tuples
`(data, attributes, layer_type)`, so they are used and tested without a viewer; only `widgets`
needs napari and magicgui themselves.

napari orders every coordinate as the array's axes: `(y, x)` = (row, column) for an image, `(z, y, x)`
for a stack, `(frame, y, x)` for a time-lapse; invrender's 2D points are `[x, y]` and its meshes
`x, y, z`. Each layer carries the `scale` (physical size of a pixel or voxel) that puts it over the
image it was made from.
"""

from typing import Any

#: A napari layer data tuple: `(data, layer attributes, layer type)`, as readers return them.
LayerData = tuple[Any, dict[str, Any], str]
