"""Check a libvirt XML document against libvirt's RelaxNG schema with ``virt-xml-validate``.

The checker is optional: when it (or ``xmllint``, which it runs) is missing,
the answer is "not run" with the reason, never "invalid".
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Validation:
    """The verdict of ``virt-xml-validate`` on a document, or why it did not run.

    ``ran`` is False when the checker could not check (not installed, or a
    program it needs is missing): then ``ok`` is None and ``output`` says why,
    never "invalid".
    """

    ran: bool
    ok: bool | None
    output: str
    tool: str | None = None

    @property
    def verdict(self) -> str:
        """``valid``, ``invalid`` or ``not run``."""
        if not self.ran:
            return "not run"
        return "valid" if self.ok else "invalid"


#: virt-xml-validate is a shell script around xmllint (Debian: libxml2-utils).
VALIDATOR_NEEDS = ("xmllint", "libxml2-utils")


def validate_xml(xml: str, schema: str = "domain", tool: str | None = None) -> Validation:
    """Check ``xml`` against libvirt's RelaxNG schema with ``virt-xml-validate`` when installed.

    Never writes to stderr: the tool's output is captured and returned.
    """
    exe = tool or shutil.which("virt-xml-validate")
    if exe is None:
        return Validation(False, None, "virt-xml-validate is not installed (Debian: libvirt-clients)")
    helper, package = VALIDATOR_NEEDS
    if shutil.which(helper) is None:
        return Validation(False, None, f"virt-xml-validate needs {helper}, which is not installed "
                                       f"(Debian: apt-get install {package})", exe)
    with tempfile.TemporaryDirectory(prefix="lab-virt-") as tmp:
        path = Path(tmp) / f"{schema}.xml"
        path.write_text(xml, encoding="utf-8")
        try:
            proc = subprocess.run([exe, str(path), schema], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Validation(False, None, f"virt-xml-validate could not run: {exc}", exe)
    output = (proc.stdout + proc.stderr).replace(str(path), f"<{schema}.xml>").strip()
    if proc.returncode in (126, 127):  # the shell could not start a program the script needs
        return Validation(False, None, f"virt-xml-validate could not run a program it needs: {output}", exe)
    return Validation(True, proc.returncode == 0, output, exe)


__all__ = ["Validation", "validate_xml", "VALIDATOR_NEEDS"]
