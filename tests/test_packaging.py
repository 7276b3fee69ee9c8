"""A plain `pip install .` carries the twistd plugin; nothing from the work tree helps."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import twisted

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_plugin_and_twistd_finds_it(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/spartan_plugin.py" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    assert not any(name.endswith("dropin.cache") for name in names)
    static = Path(ROOT, "spartan", "web", "static")  # the web client's page, as package data
    assert {f"spartan/web/static/{p.name}" for p in static.iterdir()} <= set(names)
    dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "spartan-admin = spartan.admin:main" in entry_points
    assert "Requires-Dist: tomlkit" in metadata

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    # -S: no site-packages, so the editable install of this work tree is out of sight;
    # Twisted itself comes from PYTHONPATH.
    twisted_site = os.path.dirname(os.path.dirname(twisted.__file__))
    probe = (
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "import spartan\n"
        "print(spartan.__file__)\n"
        "print(sorted(m.tapname for m in getPlugins(IServiceMaker)))\n"
    )
    found = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=tmp_path, env={"PYTHONPATH": f"{site}{os.pathsep}{twisted_site}"},
        check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    spartan_file, makers = found.stdout.splitlines()
    assert spartan_file.startswith(str(site))
    assert "'spartan'" in makers
