"""The release artefacts: `python -m build` makes a wheel and an sdist that `twine check` accepts,
with the license, the type marker and the documentation where users and tools look for them.

The builds run without an isolated build environment (setuptools comes from the test extra), so
the test needs no network, on a copy of the tree so that it leaves no build output in the checkout.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import exporter

REPO = Path(__file__).resolve().parent.parent
VERSION = exporter.__version__
DIST_NAME = "seekrflow_exporter"

pytestmark = pytest.mark.slow  # builds the package three times
# Never part of a release: local environments, caches and earlier build output.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".ci", "build", "dist", "*.egg-info",
                                     "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")


def build(source: Path, outdir: Path, *targets: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *targets, "--outdir", str(outdir), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """Build the sdist from a copy of the tree, then the wheel from that sdist (build's default)."""
    root = tmp_path_factory.mktemp("release")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    outdir = root / "dist"
    output = build(source, outdir)
    return {"dir": outdir, "output": output,
            "wheel": outdir / f"{DIST_NAME}-{VERSION}-py3-none-any.whl",
            "sdist": outdir / f"{DIST_NAME}-{VERSION}.tar.gz"}


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"{DIST_NAME}-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)



def test_build_makes_exactly_one_wheel_and_one_sdist(built):
    assert sorted(path.name for path in built["dir"].iterdir()) == sorted(
        [built["wheel"].name, built["sdist"].name])


def test_build_raises_no_deprecation_warning(built):
    # The old `license = { text = ... }` table made setuptools warn that its support ends.
    assert "Deprecat" not in built["output"], built["output"]


def test_twine_check_accepts_both_artefacts_strictly(built):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built["wheel"]), str(built["sdist"])],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_declares_the_license_as_an_spdx_expression_with_its_file(built):
    metadata = wheel_metadata(built["wheel"])
    assert metadata["Metadata-Version"] in ("2.4", "2.5")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: no legacy License field and no license classifier beside the expression.
    assert metadata["License"] is None
    assert not [c for c in metadata.get_all("Classifier") if c.startswith("License ::")]
    with zipfile.ZipFile(built["wheel"]) as archive:
        shipped = archive.read(f"{DIST_NAME}-{VERSION}.dist-info/licenses/LICENSE")
    assert shipped == (REPO / "LICENSE").read_bytes()


def test_license_file_is_the_apache_2_text():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text


def test_wheel_metadata_has_the_classifiers_urls_and_entry_points(built):
    metadata = wheel_metadata(built["wheel"])
    assert metadata["Name"] == "seekrflow-exporter"
    assert metadata["Version"] == VERSION
    assert metadata["Requires-Python"] == ">=3.10"
    classifiers = metadata.get_all("Classifier")
    assert {"Typing :: Typed", "Topic :: System :: Monitoring",
            "Programming Language :: Python :: 3 :: Only"} <= set(classifiers)
    assert metadata.get_all("Project-URL") == ["SeekrFlow API documentation, https://docs.seekr.com/"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    # Run-time dependencies are exactly the three the project allows.
    runtime = [req for req in metadata.get_all("Requires-Dist") if "extra ==" not in req]
    assert sorted(req.split(">=")[0] for req in runtime) == ["prometheus-client", "pyyaml", "requests"]
    with zipfile.ZipFile(built["wheel"]) as archive:
        entry_points = archive.read(f"{DIST_NAME}-{VERSION}.dist-info/entry_points.txt").decode()
    assert "seekrflow-exporter = exporter.cli:main" in entry_points


def test_wheel_ships_the_type_marker_and_only_the_package(built):
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = archive.namelist()
    assert "exporter/py.typed" in names
    assert "exporter/simulator/__init__.py" in names
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"exporter", f"{DIST_NAME}-{VERSION}.dist-info"}


def test_sdist_carries_the_license_changelog_and_docs(built):
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "exporter/py.typed",
            "docs/metrics.md", "docs/runbook.md"} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_image_build_context_alone_builds_the_wheel(tmp_path):
    """The Dockerfile installs the package from the files .dockerignore lets through: they must be
    enough for a build (the license file is part of the metadata since PEP 639)."""
    admitted = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.startswith("!")]
    context = tmp_path / "context"
    for name in admitted:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=NOT_SOURCES)
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(source, context / name)
    build(context, tmp_path / "dist", "--wheel")
    assert [path.name for path in (tmp_path / "dist").iterdir()] == [
        f"{DIST_NAME}-{VERSION}-py3-none-any.whl"]
