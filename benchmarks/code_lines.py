"""Code lines of the package (``metarl_agents`` and ``metarl_envs``): lines that are not blank, not
comments and not docstrings, read from git so any revision can be counted without checking it out.

    python benchmarks/code_lines.py --at e783f97 --at HEAD       # the package at each revision
    python benchmarks/code_lines.py --commits 5a2f6b5 3e001f3    # what each commit added or removed, and the sum

A commit's change is counted file by file against its first parent, with renames counted as a removal
and an addition (so a moved module nets to zero). Summing the changes of a chosen set of commits gives
the size change that set is responsible for, whatever other work landed between them.
"""

from __future__ import annotations

import argparse
import ast
import subprocess

PACKAGES = ("metarl_agents", "metarl_envs")


def code_lines(source: str) -> int:
    """Lines that are not blank, not ``#`` comments and not docstrings (module, class or function)."""
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in docstring_lines)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def file_at(revision: str, path: str) -> str:
    """The file's text at ``revision``; empty where it does not exist there."""
    shown = subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else ""


def package_lines(revision: str) -> int:
    files = git("ls-tree", "-r", "--name-only", revision, "--", *PACKAGES).split()
    return sum(code_lines(file_at(revision, path)) for path in files if path.endswith(".py"))


def commit_change(commit: str) -> int:
    parent = f"{commit}^"
    files = git("diff", "--no-renames", "--name-only", parent, commit, "--", *PACKAGES).split()
    return sum(code_lines(file_at(commit, path)) - code_lines(file_at(parent, path)) for path in files if path.endswith(".py"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--at", nargs="*", default=[], metavar="REVISION", help="count the package at these revisions")
    parser.add_argument("--commits", nargs="*", default=[], metavar="COMMIT", help="the change of each commit, and their sum")
    args = parser.parse_args(argv)
    if not args.at and not args.commits:
        parser.error("give --at REVISION ... or --commits COMMIT ...")
    for revision in args.at:
        print(f"{revision}: {package_lines(revision)} code lines")
    total = 0
    for commit in args.commits:
        change = commit_change(commit)
        total += change
        print(f"{change:+5d}  {git('log', '-1', '--format=%h %s', commit).strip()[:100]}")
    if args.commits:
        print(f"{total:+5d}  in all, {len(args.commits)} commits")


if __name__ == "__main__":
    main()
