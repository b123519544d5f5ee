"""The one live-or-recorded cell type (``%%kvm``, lab.book.core.cells) and its recordings (lab.bench.cells).

Recorded: a synthetic host's outputs are shown with the note naming that host
and why; a cell whose code changed says so and shows nothing old; a host
without recordings says what to run. Live (``/dev/kvm``): the code runs as a
cell, its errors fail the cell, and recording a page then replaying it shows
what the live run printed.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import synthetic
from synthetic import FORWARD_ID, REVERSED_ID

from lab.bench import cells, dataset, harness
from lab.book.core import cells as book_cells
from lab.paths import REPO_ROOT

KVM_PAGE = REPO_ROOT / "chapters/kvm/kvm.md"


@pytest.fixture(scope="module")
def shell():
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    ip.display_formatter.active_types = ip.display_formatter.format_types  # HTML too, as in a kernel
    return ip


def _run(shell, magic, body):
    """Run ``%%kvm`` + ``body`` through ``magic``; (the cell's outputs as one text, its result, its error)."""
    from IPython.utils.capture import capture_output

    shell.register_magic_function(magic, magic_kind="cell", magic_name=cells.MAGIC)
    with capture_output() as captured:
        result = shell.run_cell(f"{cells.MAGIC_LINE}\n{body}", store_history=False)
    shown = [captured.stdout, captured.stderr]
    for out in captured.outputs:
        shown += [out.data.get("text/html", ""), out.data.get("text/plain", "")]
    return "\n".join(shown), result.result, result.error_in_exec


# --------------------------------------------------------------------------- keys

def test_the_key_ignores_layout_only_and_follows_the_code():
    body = "vm = system.create_vm()\nvm\n"
    assert cells.key(body) == cells.key("\n\n" + body.replace("\n", "   \n") + "\n\n")
    assert cells.key(body) != cells.key(body.replace("create_vm()", "create_vm(memory_kib=64)"))
    assert cells.key(body) != cells.key(body + "# a comment\n")
    assert len(cells.key(body)) == cells.KEY_LENGTH
    assert cells.body_of("%%kvm\nx = 1\n") == "x = 1\n" and cells.body_of("x = 1\n%%kvm\n") is None


def test_every_kvm_cell_of_the_chapter_is_recorded_on_its_host():
    ds = dataset.data_set(("cells", "tour"), live=False)
    rows = ds.get("cells", page="kvm")
    stale = cells.stale(KVM_PAGE, list(rows["key"]))
    assert not stale, (f"%%kvm cells changed since host {ds.host_id} recorded chapters/kvm/kvm.md: "
                       f"{[c.ordinal for c in stale]}: run 'python -m lab record --only cells --page kvm' "
                       "on a KVM host")
    for _, row in rows.iterrows():
        assert all(o["output_type"] in ("stream", "display_data", "execute_result") for o in cells.outputs_of(row))


def test_no_visible_cell_of_the_chapter_keeps_live_or_recorded_bookkeeping():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(KVM_PAGE)
    visible = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                        and "remove-cell" not in c.metadata.get("tags", []))
    for word in ("walk", ".live", "record(", "show(", "fallback", "LAB_FORCE_RECORDED", "why_not_live"):
        assert word not in visible, f"a visible cell of kvm.md still says {word!r}"
    assert len(cells.marked_cells(KVM_PAGE)) >= 8


# --------------------------------------------------------------------------- recorded (synthetic hosts)

def test_a_recorded_cell_shows_its_hosts_output_and_says_why(shell, synthetic_roots, monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    first = cells.marked_cells(KVM_PAGE)[0]
    for root, host_id, profile in ((synthetic_roots["forward"], FORWARD_ID, synthetic.FORWARD),
                                   (synthetic_roots["reversed"], REVERSED_ID, synthetic.REVERSED)):
        text, result, error = _run(shell, book_cells.KvmCells(shell, "kvm", root), first.source)
        assert error is None and result is None
        assert synthetic.cell_text(profile, 1) in text
        assert "lab-fallback" in text and host_id in text and dataset.FORCE_RECORDED_ENV in text
        assert "lab-stale" not in text


def test_the_pages_later_recorded_cells_name_the_host_briefly(shell, synthetic_roots, monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    first, second = cells.marked_cells(KVM_PAGE)[:2]
    magic = book_cells.KvmCells(shell, "kvm", synthetic_roots["forward"])
    full, _, _ = _run(shell, magic, first.source)
    brief, _, _ = _run(shell, magic, second.source)
    assert dataset.FORCE_RECORDED_ENV in full and dataset.FORCE_RECORDED_ENV not in brief
    assert FORWARD_ID in brief and "lab-fallback" in brief and synthetic.cell_text(synthetic.FORWARD, 2) in brief


def test_the_newest_recorded_host_answers(shell, synthetic_roots, monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    first = cells.marked_cells(KVM_PAGE)[0]
    text, _, _ = _run(shell, book_cells.KvmCells(shell, "kvm", synthetic_roots["both"]), first.source)
    assert REVERSED_ID in text and FORWARD_ID not in text  # the reversed host recorded a day later


def test_a_changed_cell_says_so_and_shows_no_old_output(shell, synthetic_roots, monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    first = cells.marked_cells(KVM_PAGE)[0]
    changed = first.source + "\nprint('a line the reader added')"
    assert changed != first.source
    text, result, error = _run(shell, book_cells.KvmCells(shell, "kvm", synthetic_roots["forward"]), changed)
    assert error is None and result is None  # the page still executes and builds
    assert "lab-stale" in text and FORWARD_ID in text and "--only cells --page kvm" in text
    assert "SYNTHETIC" not in text


def test_a_host_without_recorded_cells_says_what_to_run(shell, tmp_path, monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    synthetic.make_host(tmp_path, FORWARD_ID, resources=("tour",))
    first = cells.marked_cells(KVM_PAGE)[0]
    text, _, error = _run(shell, book_cells.KvmCells(shell, "kvm", str(tmp_path)), first.source)
    assert error is None and "lab-missing" in text and "python -m lab record --only cells" in text


def test_the_magic_takes_no_arguments(shell):
    _, _, error = _run(shell, book_cells.KvmCells(shell, "kvm"), "1\n")
    assert error is None
    shell.register_magic_function(book_cells.KvmCells(shell, "kvm"), magic_kind="cell", magic_name=cells.MAGIC)
    result = shell.run_cell("%%kvm --live\n1\n", store_history=False)
    assert result.error_in_exec is not None or result.error_before_exec is not None


def test_a_recording_with_broken_outputs_is_refused():
    row = {"host_id": FORWARD_ID, "page": "kvm", "key": "0" * 16, "outputs": json.dumps({"text": "x"})}
    with pytest.raises(ValueError, match="not a list of nbformat outputs"):
        cells.outputs_of(row)


# --------------------------------------------------------------------------- live (/dev/kvm)

@pytest.mark.kvm
def test_live_the_code_runs_as_a_cell(shell, monkeypatch):
    monkeypatch.delenv(dataset.FORCE_RECORDED_ENV, raising=False)
    if dataset.why_not_live() is not None:
        pytest.skip(dataset.why_not_live())
    magic = book_cells.KvmCells(shell, "kvm")
    text, result, error = _run(shell, magic, "from lab import kvm\nsystem = kvm.open()\nprint('opened')\n"
                                             "system.api_version()\n")
    assert error is None and result == 12 and "opened" in text and "lab-fallback" not in text
    assert shell.user_ns["system"].api_version() == 12  # the cell's names stay, as in any cell
    shell.user_ns["system"].close()
    _, _, error = _run(shell, magic, "system.create_vm()\n")  # closed above: the error fails the cell
    assert error is not None and type(error).__name__ == "ClosedError"


PAGE = '''\
---
jupytext:
  text_representation: {extension: .md, format_name: myst, format_version: 0.13}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

```{code-cell} ipython3
:tags: [remove-cell]
%load_ext lab.book.chapters.kvm
```

```{code-cell} ipython3
%%kvm
from lab import kvm
system = kvm.open()
print("api", system.api_version())
```

```{code-cell} ipython3
%%kvm
vm = system.create_vm()
vm.add_memory(0, 4096).size
```
'''


@pytest.mark.kvm
def test_live_recording_a_page_then_replaying_it(shell, tmp_path, monkeypatch):
    """``execute`` + the recorder's frame, written with provenance; the recorded view shows the same outputs."""
    monkeypatch.delenv(dataset.FORCE_RECORDED_ENV, raising=False)
    if dataset.why_not_live() is not None:
        pytest.skip(dataset.why_not_live())
    page = tmp_path / "chapter" / "kvm.md"  # page name "kvm": the extension above registers that page
    page.parent.mkdir()
    page.write_text(textwrap.dedent(PAGE), encoding="utf-8")
    recorded = cells.execute(page, timeout_s=120)
    assert [c.ordinal for c in recorded] == [1, 2]
    assert recorded[0].outputs == ({"output_type": "stream", "name": "stdout", "text": "api 12\n"},)
    assert recorded[1].outputs[0]["data"]["text/plain"] == "4096"
    prov = harness.provenance(command="tests/test_cells.py")  # this host, as 'python -m lab record' writes it
    root = tmp_path / "measured"
    harness.record(cells.RESOURCE, cells.to_frame(recorded, prov), cells.FIELDS, prov, root=root)

    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")
    magic = book_cells.KvmCells(shell, "kvm", str(root))
    text, _, error = _run(shell, magic, recorded[0].source)
    assert error is None and "api 12" in text and prov["host_id"] in text and "lab-fallback" in text
    text, _, _ = _run(shell, magic, recorded[1].source)
    assert "4096" in text
