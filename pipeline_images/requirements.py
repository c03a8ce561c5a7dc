"""Print the requirements of the project and one extra, one per line, from pyproject.toml.

The image build installs them in a layer that depends on pyproject.toml alone, before
Tailor's own wheel (``pip install --no-deps``), so a code change does not reinstall them.
Usage: python requirements.py EXTRA [PYPROJECT]
"""

import sys
import tomllib

extra = sys.argv[1]
path = sys.argv[2] if len(sys.argv) > 2 else "/src/pyproject.toml"
with open(path, "rb") as f:
    project = tomllib.load(f)["project"]
if extra not in project["optional-dependencies"]:
    sys.exit(f"requirements.py: no extra {extra!r} in {path}")
sys.stdout.write("\n".join([*project["dependencies"], *project["optional-dependencies"][extra]]))
sys.stdout.write("\n")
