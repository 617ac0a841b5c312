"""Print the pinned requirements of pyproject.toml (dependencies + the extras named in $EXTRAS).

Used by the Dockerfile to install dependencies in their own layer, before the code is copied, so a code
change does not reinstall them. An unknown extra fails the build (a typo in EXTRAS must not pass).
"""

import os
import sys
import tomllib


def main(path: str) -> None:
    with open(path, "rb") as fh:
        project = tomllib.load(fh)["project"]
    requirements = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in filter(None, os.environ.get("EXTRAS", "").split(",")):
        if extra not in optional:
            sys.exit(f"unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
        requirements += optional[extra]
    sys.stdout.write("\n".join(dict.fromkeys(requirements)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
