"""Guest kits: a Debian kernel and a busybox initramfs for QEMU guests, built from Debian packages.

* :mod:`lab.kit.profiles` - what a kit holds (modules, packages, the ``/init`` program);
* :mod:`lab.kit.builder` - download, unpack, pack, cache by package versions; find a built kit;
* :mod:`lab.kit.modules` - module dependencies from each module's ``.modinfo``;
* :mod:`lab.kit.cpio` - the initramfs archive format.

``python -m lab kit build`` builds the default profile (``disk-trap``);
:func:`find` never downloads: a chapter uses it to decide whether it may boot a guest.
"""

from lab.kit.builder import Kit, KitError, KitMissing, build, build_command, built, find, kit_root
from lab.kit.profiles import PROFILES, Profile

__all__ = ["Kit", "KitError", "KitMissing", "build", "build_command", "built", "find", "kit_root",
           "PROFILES", "Profile"]
