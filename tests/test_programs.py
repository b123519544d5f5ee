"""Every external program the project starts is declared in tools/programs.tsv.

A new machine has only what set-up installs, and set-up installs what
``tools/programs.tsv`` declares. So this test finds the programs that the code
starts and fails on any that the list does not name:

- Python (``lab/``, ``tests/``, ``tools/``, the chapters' code cells): calls to
  ``subprocess.run/Popen/check_output/check_call/call`` whose argument list
  starts with a literal program name, and ``shutil.which("name")``;
- shell (``tools/*.sh``, ``.ci/run``, ``binder/postBuild``, the Makefile's
  recipes, ``!`` lines and ``%%bash`` and ``%%shell`` (lab.book.core.transcripts) cells of the chapters): every simple
  command, found by parsing with ``shfmt --to-json`` (so heredocs, case
  patterns and strings are not mistaken for commands), looking through
  wrappers such as ``env``, ``runuser ... --``, ``timeout`` and ``xargs``.

Programs the project ships itself (``tools/...``, ``.venv/bin/...``), names
computed at run time and functions defined in the same script are not
external programs and are left out.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

LIST = REPO_ROOT / "tools" / "programs.tsv"
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call"}
WRAPPERS = {"env", "runuser", "sudo", "timeout", "xargs", "exec", "command", "nice", "time"}


def declared() -> dict[str, str]:
    """Program name -> purpose, from tools/programs.tsv."""
    out: dict[str, str] = {}
    for line in LIST.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        programs, _package, purpose, _why = line.split("\t", 3)
        for name in programs.split(","):
            out[name] = purpose
    return out


def normalise(program: str) -> str:
    """``/usr/sbin/useradd`` is the declared ``useradd``."""
    return program.rsplit("/", 1)[-1] if program.startswith(("/usr/", "/bin/", "/sbin/")) else program


# --------------------------------------------------------------------------- Python

def _argv0(node: ast.AST) -> str | None:
    """The program of a literal argument list such as ``["gcc", "-O2", ...]``."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


#: Names of variables that hold a command line (``argv = ["apt-get", ...]``).
ARGV_NAMES = {"argv", "cmd", "command"}


def python_programs(source: str) -> set[str]:
    """Literal program names that Python code starts or looks up.

    Calls of ``subprocess`` functions and of the modules' private runners
    (``_run([...])``), and argument lists assigned to names
    such as ``argv``.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ARGV_NAMES
                                                for t in node.targets):
            program = _argv0(node.value)
            if program:
                found.add(program)
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        first = node.args[0]
        runs = (owner == "subprocess" and name in SUBPROCESS_CALLS) or name.startswith("_run")
        if runs and _argv0(first):
            found.add(_argv0(first))
        elif owner == "shutil" and name == "which" and isinstance(first, ast.Constant):
            found.add(first.value)
    return found


# --------------------------------------------------------------------------- shell

def _literal(word: dict) -> str | None:
    """The text of a shell word when it is literal (quotes allowed), else None."""
    text = ""
    for part in word.get("Parts", []):
        kind = part.get("Type")
        if kind == "Lit":
            text += part.get("Value", "")
        elif kind in ("SglQuoted",):
            text += part.get("Value", "")
        elif kind == "DblQuoted" and all(p.get("Type") == "Lit" for p in part.get("Parts", [])):
            text += "".join(p.get("Value", "") for p in part.get("Parts", []))
        else:
            return None
    return text


def _unwrap(args: list[str | None]) -> str | None:
    """The program a command line starts, looking through wrapper commands."""
    while args and args[0] in WRAPPERS:
        wrapper, rest = args[0], args[1:]
        if "--" in rest:
            rest = rest[rest.index("--") + 1:]
        else:
            rest = [a for a in rest if a is None or not (a.startswith("-") or "=" in a)]
            if wrapper == "timeout" and rest:
                rest = rest[1:]  # the duration
            if wrapper == "runuser":  # runuser -u USER CMD without --
                rest = rest[1:]
        args = rest
    return args[0] if args else None


def shell_programs(script: str) -> set[str]:
    """Programs a shell script starts (external or built-in), by its syntax tree."""
    proc = subprocess.run(["shfmt", "--to-json"], input=script, capture_output=True, text=True, check=True)
    tree = json.loads(proc.stdout)
    found: set[str] = set()
    functions: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("Type") == "FuncDecl":
                functions.add(node["Name"]["Value"])
            if node.get("Type") == "CallExpr" and node.get("Args"):
                program = _unwrap([_literal(w) for w in node["Args"]])
                if program:
                    found.add(program)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return {p for p in found - functions if not _ships_with_project(p)}


def _ships_with_project(program: str) -> bool:
    return "/" in program and not program.startswith("/usr/") and not program.startswith("/bin/")


def makefile_recipes(text: str) -> str:
    lines = [line[1:].lstrip("@-") for line in text.splitlines() if line.startswith("\t")]
    script = "\n".join(lines).replace("$$", "\x00").replace("$(VENV)", ".venv").replace("\x00", "$")
    return re.sub(r"\$\((\w+)\)", r"$\1", script)


# --------------------------------------------------------------------------- chapters

CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.M | re.S)


def chapter_programs(text: str) -> set[str]:
    found: set[str] = set()
    for body in CELL.findall(text):
        lines = [line for line in body.splitlines() if not line.startswith(":")]  # cell options
        if lines and re.match(r"%%(bash|sh|shell|script (ba)?sh)\b", lines[0]):
            found |= shell_programs("\n".join(lines[1:]))
            continue
        shell = [line.lstrip()[1:] for line in lines if line.lstrip().startswith("!")]
        if shell:
            found |= shell_programs("\n".join(shell))
        python = [line for line in lines if not line.lstrip().startswith(("!", "%"))]
        found |= python_programs("\n".join(python))
    return found


# --------------------------------------------------------------------------- the scan

def started_programs() -> dict[str, set[str]]:
    """Program -> the files that start it."""
    uses: dict[str, set[str]] = {}

    def add(programs: set[str], path: Path) -> None:
        for program in programs:
            uses.setdefault(normalise(program), set()).add(str(path.relative_to(REPO_ROOT)))

    for folder in ("lab", "tests", "tools"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            add(python_programs(path.read_text(encoding="utf-8")), path)
    scripts = [*(REPO_ROOT / "tools").glob("*.sh"), REPO_ROOT / ".ci" / "run", REPO_ROOT / "binder" / "postBuild"]
    for path in scripts:
        add(shell_programs(path.read_text(encoding="utf-8")), path)
    makefile = REPO_ROOT / "Makefile"
    add(shell_programs(makefile_recipes(makefile.read_text(encoding="utf-8"))), makefile)
    for path in (REPO_ROOT / "chapters").rglob("*.md"):
        add(chapter_programs(path.read_text(encoding="utf-8")), path)
    return uses


@pytest.fixture(scope="module")
def shfmt() -> None:
    if shutil.which("shfmt") is None:
        pytest.fail("shfmt is missing: it is a declared test program "
                    "(apt-get install shfmt; make test installs it as root)")


def test_every_started_program_is_declared(shfmt):
    known = declared()
    undeclared = {p: sorted(files) for p, files in started_programs().items() if p not in known}
    assert not undeclared, ("programs started but not declared in tools/programs.tsv "
                            f"(add each with its Debian package and purpose): {undeclared}")


def test_the_scan_finds_programs_in_each_kind_of_source(shfmt):
    # The scanner must see through the constructs the project uses, or the
    # test above passes on a list it never checked.
    script = ("f() { grep y; }\nf\nA=1 env -i X=1 grep x | awk 1 && runuser -u nobody -- virsh list\n"
              "cat <<'PY'\nnotacommand here\nPY\ncase $1 in start|stop) xmllint ;; esac\n"
              "out=$(qemu-img info x)\ntools/setup.sh book\n\"$VENV/bin/python\" -V\n")
    assert shell_programs(script) == {"grep", "awk", "virsh", "cat", "xmllint", "qemu-img"}
    python = ("import subprocess, shutil\nsubprocess.run(['gcc', '-v'])\nshutil.which('objcopy')\n"
              "subprocess.run([exe])\n_run(['dpkg-deb', '-x'])\nargv = ['apt-get', 'download']\n"
              "x = ['not', 'argv']\n")
    assert python_programs(python) == {"gcc", "objcopy", "dpkg-deb", "apt-get"}
    chapter = ("```{code-cell} ipython3\n:tags: [remove-input]\n!ls -l /dev/kvm\nx = 1\n```\n"
               "```{code-cell} ipython3\n%%bash\nlsmod | grep kvm\n```\n")
    assert chapter_programs(chapter) == {"ls", "lsmod", "grep"}
    assert makefile_recipes("test:\n\t@$(VENV)/bin/pytest\n\t@echo $$HOME\n") == ".venv/bin/pytest\necho $HOME"


def test_the_list_is_well_formed():
    purposes = set()
    for n, line in enumerate(LIST.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"programs.tsv line {n}"
        assert len(fields) == 4 and all(f.strip() for f in fields), f"{where}: want 4 tab-separated fields"
        assert fields[2] in {"base", "book", "live", "test", "pip"}, f"{where}: unknown purpose {fields[2]!r}"
        purposes.add(fields[2])
    assert purposes == {"base", "book", "live", "test", "pip"}
