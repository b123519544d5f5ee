"""The mini VMM's view of the KVM ABI against <linux/kvm.h>, compiled with gcc.

Every ioctl number (lab.kvm.ioctl_numbers.ALL), every constant
(lab.kvm.constants.ALL), every struct size and every field offset
(lab.kvm.structs) is printed by a C program built against the kernel
headers and compared with the Python values. Needs gcc and linux-libc-dev.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.kvm import constants, ioctl_numbers, structs

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or not Path("/usr/include/linux/kvm.h").exists(),
    reason="needs gcc and the kernel headers (Debian: apt-get install gcc linux-libc-dev)",
)


def _c_program() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/kvm.h>", "int main(void) {"]
    for name in ioctl_numbers.ALL:
        lines.append(f'  printf("ioctl {name} %lu\\n", (unsigned long)({name}));')
    for name in constants.ALL:
        lines.append(f'  printf("const {name} %lu\\n", (unsigned long)({name}));')
    for name in structs.STRUCTS:
        lines.append(f'  printf("size {name} %zu\\n", sizeof(struct {name}));')
    for (sname, fpath) in structs.CHECKED_FIELDS:
        lines.append(f'  printf("offset {sname}.{fpath} %zu\\n", offsetof(struct {sname}, {fpath}));')
    lines.append('  printf("size kvm_run_head %zu\\n", offsetof(struct kvm_run, kvm_valid_regs));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def header_values(tmp_path_factory) -> dict[str, int]:
    tmp = tmp_path_factory.mktemp("abi")
    src, exe = tmp / "abi.c", tmp / "abi"
    src.write_text(_c_program())
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values = {}
    for line in out.splitlines():
        kind, name, value = line.split()
        values[f"{kind} {name}"] = int(value)
    return values


@pytest.mark.parametrize("name", sorted(ioctl_numbers.ALL))
def test_ioctl_number_matches_header(header_values, name):
    assert ioctl_numbers.ALL[name] == header_values[f"ioctl {name}"], name


@pytest.mark.parametrize("name", sorted(constants.ALL))
def test_constant_matches_header(header_values, name):
    assert constants.ALL[name] == header_values[f"const {name}"], name


@pytest.mark.parametrize("name", sorted(structs.STRUCTS))
def test_struct_size_matches_header(header_values, name):
    assert ctypes.sizeof(structs.STRUCTS[name]) == header_values[f"size {name}"], name


@pytest.mark.parametrize("key", sorted(structs.CHECKED_FIELDS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_field_offset_matches_header(header_values, key):
    assert structs.CHECKED_FIELDS[key] == header_values[f"offset {key[0]}.{key[1]}"]


def test_kvm_run_head_fits_before_the_register_area(header_values):
    # Our kvm_run overlay stops after the exit union; it must not reach past it.
    assert ctypes.sizeof(structs.kvm_run) <= header_values["size kvm_run_head"]


def test_ioc_rejects_oversized_argument():
    with pytest.raises(ValueError):
        ioctl_numbers._IOW(ioctl_numbers.KVMIO, 1, 1 << 14)
