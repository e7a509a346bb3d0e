"""The README's layout table names every module of the package, and nothing that is gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_layout_table_lists_exactly_the_modules_there_are():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    listed = set(re.findall(r"^\| `(exporter/[^`]+)` \|", layout, re.MULTILINE))
    modules = {f"exporter/{path.name}" for path in (ROOT / "exporter").glob("*.py")
               if path.name not in ("__init__.py", "__main__.py")}
    assert listed == modules | {"exporter/simulator/"}
