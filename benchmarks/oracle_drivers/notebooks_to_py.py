"""Write each notebook's code cells under SOURCE as one .py file under TARGET (IPython
magics and shell escapes commented out), so that notebooks run and are checked as scripts.

    python benchmarks/oracle_drivers/notebooks_to_py.py SOURCE TARGET
"""

import json
import sys
from pathlib import Path


def convert(source: Path, target: Path) -> None:
    for notebook in sorted(source.rglob("*.ipynb")):
        lines = []
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for line in "".join(cell["source"]).splitlines():
                lines.append("# " + line if line.lstrip().startswith(("!", "%")) else line)
            lines.append("")
        out = target / notebook.relative_to(source).with_suffix(".py")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
