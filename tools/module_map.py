"""Write (or check) the module map of docs/layout.md from the modules' own docstrings, so it cannot go stale.

    python -m tools.module_map           # rewrite the map between the markers in docs/layout.md
    python -m tools.module_map --check   # exit 1 naming what differs (tests/test_layers.py runs this)

One line per module of facepaint/ (by subpackage), stages/, flows/, tracking/, tools/, bench/ and profiles/:
its path and the first sentence of its docstring (a module without one is an error). A folder's line is its
`__init__.py`'s first sentence. profiles/*.yaml are listed by name with their first comment line.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = "docs/layout.md"  # where the map lives, between BEGIN and END
BEGIN = "<!-- module map: written by `python -m tools.module_map` from the docstrings; do not edit by hand -->"
END = "<!-- end of the module map -->"
FOLDERS = ("facepaint", "stages", "flows", "tracking", "tools", "bench", "profiles")


def first_sentence(text: str, longest: int = 100) -> str:
    """The first sentence of a docstring's first paragraph, on one line; one longer than `longest` characters
    is cut at its first colon or semicolon (the summary before the details)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?(?<!\bal)(?<!\bFig)(?<!\be\.g)(?<!\bi\.e)\.)(\s|$)", paragraph)
    sentence = (m.group(1) if m else paragraph).rstrip(".:")
    if len(sentence) > longest:
        cut = re.match(r"(.{15,}?)[:;] ", sentence)
        sentence = cut.group(1) if cut else sentence
    return sentence


def summary(path: Path) -> str:
    if path.suffix == ".yaml":
        comments = [line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")]
        if not comments:
            raise ValueError(f"{path} has no comment line saying what it is")
        return first_sentence(" ".join(comments))
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        raise ValueError(f"{path} has no module docstring: say in one sentence what it is for")
    return first_sentence(doc)


def entries(folder: Path, repo: Path, depth: int = 0) -> list[str]:
    """The map's lines for `folder` and what is under it (subfolders after its own modules)."""
    pad = "  " * depth
    rel = folder.relative_to(repo)
    init = folder / "__init__.py"
    head = f"{pad}- `{rel}/`" + (f" {summary(init)}" if init.is_file() else "")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".py", ".yaml") and p.name != "__init__.py")
    lines = [head] + [f"{pad}  - `{p.name}` {summary(p)}" for p in files]
    subfolders = sorted(
        p for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").is_file() and p.name != "__pycache__"
    )
    for sub in subfolders:
        lines += entries(sub, repo, depth + 1)
    return lines


def module_map(repo: Path = REPO) -> str:
    lines = []
    for name in FOLDERS:
        if (repo / name).is_dir():
            lines += entries(repo / name, repo)
    return "\n".join(lines)


def rewrite(readme: str, generated: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"{PAGE} lacks the module map's markers:\n{BEGIN}\n{END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def differences(repo: Path = REPO) -> list[str]:
    """The page's map lines that differ from the generated ones (empty when it is up to date)."""
    readme = (repo / PAGE).read_text()
    if BEGIN not in readme or END not in readme:
        return [f"{PAGE} lacks the module map's markers"]
    have = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()
    want = module_map(repo).splitlines()
    return [f"{PAGE} lacks: {line.strip()}" for line in want if line not in have] + [
        f"{PAGE} has, but no module says: {line.strip()}" for line in have if line not in want
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what differs (exit 1 if anything)")
    args = parser.parse_args(argv)
    if args.check:
        diff = differences()
        for line in diff:
            print(line)
        if diff:
            print(f"run `python -m tools.module_map` to rewrite the module map of {PAGE}")
        return 1 if diff else 0
    path = REPO / PAGE
    path.write_text(rewrite(path.read_text(), module_map()))
    print(f"{PAGE}: module map of {len(module_map().splitlines())} lines written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
