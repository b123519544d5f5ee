"""Shell commands on the hands-on pages: the ``%%shell`` cell magic and what it shows.

A page loads the extension once (``%load_ext lab.book.core.transcripts``); then a
cell such as::

    %%shell --needs libvirtd
    virsh -c qemu:///system list --all

runs the command for real when this machine offers what it needs
(:func:`lab.transcripts.unmet`) and shows its output. Otherwise it shows the
output recorded on the book's host, with a Japanese note naming that host and
saying why this machine could not run it. Everything below the first line is
plain shell: a reader can copy it into a terminal.
"""

from __future__ import annotations

import argparse
import html
import shlex
from dataclasses import dataclass
from typing import Any

from lab import transcripts
from lab.book.ja.backends import backend_ja

MISSING_PROGRAM = 127  # bash's exit status for "command not found"

# Why a need is not met, in the reader's words.
NEED_REASONS = {
    "kvm": "この機械では /dev/kvm を開けません(KVM がない、または権限がない)",
    "libvirtd": "この機械では qemu:///system の libvirtd に接続できません(デーモンが動いていない、または root でない)",
    "root": "このコマンドには root の権限が要りますが、いまの利用者は root ではありません",
    "missing": "このコマンドのプログラムがこの機械に入っていません(終了コード 127)",
    "forced": "環境変数 LAB_FORCE_RECORDED が設定されているので、このコマンドは実行しません",
}


def _pre(text: str, css: str) -> str:
    return f'<div class="highlight-{css} notranslate"><div class="highlight"><pre>{html.escape(text)}</pre></div></div>'


def _output(t: transcripts.Transcript) -> str:
    text = t.stdout + t.stderr
    status = "(時間切れで止めました)" if t.timed_out else f"(終了コード {t.exit_code})"
    return _pre((text if text.endswith("\n") or not text else text + "\n") + status, "text")


@dataclass(frozen=True)
class Shown:
    """A command and its output, live or recorded, as a notebook output (HTML and plain text)."""

    command: str
    transcript: transcripts.Transcript | None
    recording: transcripts.Recording | None = None
    reasons: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        return self.recording is None and self.transcript is not None

    def note(self) -> str:
        if self.live:
            return ""
        why = "。".join(NEED_REASONS[r] for r in self.reasons)
        if self.recording is None:
            return f"{why}。このコマンドの記録もまだありません。"
        r = self.recording
        return (f"{why}。そのため、この本のホスト {r.host_id}({r.cpu_model}、カーネル {r.kernel}、"
                f"{backend_ja(r.kvm_backend, r.runs_in_vm)})で {r.recorded_at:%Y-%m-%d %H:%M} UTC に"
                f"同じコマンドを実行したときの出力を示します。")

    def _repr_html_(self) -> str:
        shown = self.transcript if self.live else (self.recording.transcript if self.recording else None)
        parts = ['<div class="lab-transcript">']
        if not self.live:
            parts.append('<div class="admonition note lab-fallback"><p class="admonition-title">'
                         f'記録済みの出力です</p><p>{html.escape(self.note())}</p></div>')
        if shown is not None:
            parts.append(_output(shown))
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        shown = self.transcript if self.live else (self.recording.transcript if self.recording else None)
        head = "" if self.live else f"[記録済みの出力] {self.note()}\n"
        if shown is None:
            return head.rstrip()
        return head + shown.stdout + shown.stderr + f"(終了コード {shown.exit_code})"


def shell(command: str, *, needs: tuple[str, ...] = (), timeout_s: float = transcripts.DEFAULT_TIMEOUT_S,
          root: str | None = None) -> Shown:
    """Run ``command`` if this machine offers ``needs``; else show its recording from the book's host."""
    missing = transcripts.unmet(needs)
    if missing:
        try:
            rec = transcripts.recorded(command, root=root)
        except transcripts.TranscriptError:
            rec = None
        return Shown(command, None, rec, tuple(missing))
    result = transcripts.run(command, timeout_s=timeout_s)
    if result.exit_code == MISSING_PROGRAM:  # e.g. Binder has no virsh: show what the book's host printed
        try:
            return Shown(command, None, transcripts.recorded(command, root=root), ("missing",))
        except transcripts.TranscriptError:
            return Shown(command, result)
    if transcripts.should_record() and not result.timed_out:
        transcripts.record([result], root=root)
    return Shown(command, result)


def _parse(line: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="%%shell", add_help=False)
    parser.add_argument("--needs", default="", help="comma-separated: kvm, libvirtd, root")
    parser.add_argument("--timeout", type=float, default=transcripts.DEFAULT_TIMEOUT_S)
    return parser.parse_args(shlex.split(line))


def shell_magic(line: str, cell: str) -> Shown:
    """The ``%%shell`` cell magic: the cell body is the command."""
    args = _parse(line)
    needs = tuple(n for n in args.needs.split(",") if n)
    return shell(cell.strip("\n"), needs=needs, timeout_s=args.timeout)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magic_function(shell_magic, magic_kind="cell", magic_name="shell")
