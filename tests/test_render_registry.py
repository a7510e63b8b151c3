"""The renderer interface: lookup by name, device types, optional packages, CLI errors."""

from __future__ import annotations

import pytest
import torch

from invrender.cli import main
from invrender.core.render.registry import RENDERERS, RendererSpec, RendererUnavailable, get_renderer
from invrender.core.render.splat2d import render_curves


def test_splat2d_is_registered_for_cpu_and_cuda():
    assert get_renderer("splat2d", torch.device("cpu")) is render_curves
    assert RENDERERS["splat2d"].device_types == ("cpu", "cuda")


def test_unknown_renderer_names_the_known_ones():
    with pytest.raises(RendererUnavailable, match="unknown renderer 'nosuch'.*splat2d"):
        get_renderer("nosuch", torch.device("cpu"))


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
    temporary_renderer(RendererSpec("cuda-only", render_curves, ("cuda",)))
    with pytest.raises(RendererUnavailable, match="runs on cuda, not on cpu"):
        get_renderer("cuda-only", torch.device("cpu"))


def test_a_renderer_whose_package_is_missing_says_which(temporary_renderer):
    temporary_renderer(RendererSpec("needs-pkg", render_curves, ("cpu",), requires="no_such_package_xyz"))
    with pytest.raises(RendererUnavailable, match="needs the package 'no_such_package_xyz'"):
        get_renderer("needs-pkg", torch.device("cpu"))


def test_cli_refuses_an_unknown_backend_in_one_line(tmp_path, capsys):
    image = tmp_path / "frame.tif"
    image.write_bytes(b"")  # never read: the config is checked first
    code = main(["spline-refine", str(image), "--out", str(tmp_path / "out"), "render.backend=nosuch"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "render.backend" in err and "nosuch" in err
    assert not (tmp_path / "out").exists()


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
