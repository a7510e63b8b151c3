"""The renderer interface: lookup by name, device types, optional packages, CLI errors."""

from __future__ import annotations

import pytest
import torch

from invrender.cli import main
from invrender.core.render.registry import (
    KINDS,
    RENDERERS,
    RendererSpec,
    RendererUnavailable,
    get_renderer,
    register_renderer,
    renderer_names,
)
from invrender.core.render.splat2d import render_curves


def test_splat2d_is_registered_for_cpu_and_cuda():
    assert get_renderer("splat2d", torch.device("cpu"), "curves") is render_curves
    assert RENDERERS["splat2d"].device_types == ("cpu", "cuda")


def test_every_kind_has_its_backends():
    assert renderer_names("curves") == ["splat2d"]
    assert renderer_names("polygons") == ["nvdiffrast", "polygon2d"]
    assert renderer_names("mesh spectrum") == ["exact", "nufft"]
    assert set(KINDS) == {"curves", "polygons", "mesh spectrum"}


def test_unknown_renderer_names_the_known_ones_of_its_kind():
    with pytest.raises(
        RendererUnavailable, match="'nosuch' is unknown, not a curves renderer; curves renderers: auto, splat2d"
    ):
        get_renderer("nosuch", torch.device("cpu"), "curves")


def test_a_renderer_of_another_kind_is_refused():
    with pytest.raises(RendererUnavailable, match="'exact' is a mesh spectrum renderer, not a curves renderer"):
        get_renderer("exact", torch.device("cpu"), "curves")


def test_a_renderer_of_an_unknown_kind_cannot_register():
    with pytest.raises(ValueError, match="unknown kind 'voxels'"):
        register_renderer(RendererSpec("voxel-splat", "voxels", render_curves, ("cpu",)))
    assert "voxel-splat" not in RENDERERS


@pytest.fixture
def temporary_renderer():
    names = []

    def add(spec: RendererSpec) -> None:
        RENDERERS[spec.name] = spec
        names.append(spec.name)

    yield add
    for name in names:
        RENDERERS.pop(name)


def test_a_cuda_only_renderer_is_refused_on_cpu(temporary_renderer):
    temporary_renderer(RendererSpec("cuda-only", "curves", render_curves, ("cuda",)))
    with pytest.raises(RendererUnavailable, match="runs on cuda, not on cpu"):
        get_renderer("cuda-only", torch.device("cpu"), "curves")


def test_a_renderer_whose_package_is_missing_says_which(temporary_renderer):
    temporary_renderer(RendererSpec("needs-pkg", "curves", render_curves, ("cpu",), requires="no_such_package_xyz"))
    with pytest.raises(RendererUnavailable, match="needs the package 'no_such_package_xyz'"):
        get_renderer("needs-pkg", torch.device("cpu"), "curves")


@pytest.mark.parametrize(
    "command, backend, kind, listed",
    [
        ("spline-refine", "nosuch", "curves", "auto, splat2d"),
        ("spline-refine", "exact", "curves", "auto, splat2d"),
        ("mesh-fit", "splat2d", "mesh spectrum", "auto, exact, nufft"),
        ("cell-seg", "nufft", "polygons", "auto, nvdiffrast, polygon2d"),
        ("acdr-train", "exact", "polygons", "auto, nvdiffrast, polygon2d"),
    ],
)
def test_cli_refuses_a_backend_of_another_kind_in_one_line(tmp_path, capsys, command, backend, kind, listed):
    """Each method declares the kind it renders; any other backend is a usage error before any input
    is read (the input here is an empty file) and nothing is written."""
    image = tmp_path / "frame.tif"
    image.write_bytes(b"")
    extra = ["--config", "shapes"] if command == "acdr-train" else []
    inputs = [] if command == "acdr-train" else [str(image)]
    out = tmp_path / "out"
    code = main([command, *inputs, *extra, "--out", str(out), f"render.backend={backend}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"render.backend: '{backend}' is" in err and f"not a {kind} renderer; {kind} renderers: {listed}" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "command, loss",
    [
        ("spline-refine", "+loss.mesh_overlap=1.0"),
        ("mesh-fit", "+loss.curvature=0.1"),
        ("cell-seg", "+loss.mask_bce=1"),
    ],
)
def test_cli_refuses_a_loss_of_a_quantity_the_method_does_not_produce(tmp_path, capsys, command, loss):
    image = tmp_path / "frame.tif"
    image.write_bytes(b"")  # never read: the config is checked first
    out = tmp_path / "out"
    code = main([command, str(image), "--out", str(out), loss])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "which this method does not produce" in err, err
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_splat2d_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(2, 3, 20, 2, generator=g, dtype=torch.float64) * 20 + 6
    radii = torch.rand(2, 3, 20, generator=g, dtype=torch.float64) + 1.5
    weights = torch.rand(2, 3, 20, generator=g, dtype=torch.float64)
    profile = torch.rand(2, 9, generator=g, dtype=torch.float64)
    cpu = render_curves(centers, radii, weights, profile, (32, 32))
    cuda = render_curves(centers.cuda(), radii.cuda(), weights.cuda(), profile.cuda(), (32, 32))
    torch.testing.assert_close(cuda.cpu(), cpu)
