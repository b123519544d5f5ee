"""libvirt for the book: one API over many hypervisors, default ``test:///default``.

Typical use in a chapter::

    from lab import virt
    conn = virt.connect(prefer=["qemu:///system"])   # which URI answered, and why
    conn.describe_rows()                             # which URI answered, and why
    with virt.session(conn=...) as s: ...

* :mod:`lab.virt.spec` - typed domain / volume specs -> XML (ElementTree) and back;
* :mod:`lab.virt.connection` - choosing the URI, listing and defining domains;
* :mod:`lab.virt.domain` - one domain's lifecycle and snapshots;
* :mod:`lab.virt.storage` - pools and volumes;
* :mod:`lab.virt.session` - create things and remove them again, also after an error;
* :mod:`lab.virt.errors` - libvirt failures as clear messages;
* :mod:`lab.virt.mapping` - the virsh <-> libvirt <-> AWS <-> OpenStack table.

Importing this package does not import libvirt-python; the first connection
does, and silences libvirt's default error printer (it writes to stderr).
"""

from lab.virt.connection import (
    ALLOWED_STATES,
    DEFAULT_URI,
    OPERATIONS,
    URI_ENV,
    Attempt,
    Connection,
    Domain,
    DomainInfo,
    Pool,
    Volume,
    connect,
    libvirt_module,
    resolve_uri,
)
from lab.virt.errors import (
    CleanupError,
    DaemonNotRunning,
    DomainExists,
    InvalidState,
    LibvirtMissing,
    NoSuchDomain,
    NoSuchSnapshot,
    PermissionDenied,
    Rejected,
    SpecError,
    StorageError,
    Unsupported,
    VirtError,
)
from lab.virt.mapping import load_mapping, load_timeline, mapping_table
from lab.virt.session import BOOK_PREFIX, TEST_PREFIX, Session, leftovers, remove_leftovers, session
from lab.virt.spec import Disk, DomainSpec, VolumeSpec, compare_families, device_rows, xml_diff
from lab.virt.validate import Validation, validate_xml

__all__ = [
    "ALLOWED_STATES", "DEFAULT_URI", "OPERATIONS", "URI_ENV", "Attempt", "Connection", "Domain",
    "DomainInfo", "Pool", "Volume", "connect", "libvirt_module", "resolve_uri",
    "CleanupError", "DaemonNotRunning", "DomainExists", "InvalidState", "LibvirtMissing", "NoSuchDomain",
    "NoSuchSnapshot", "PermissionDenied", "Rejected", "SpecError", "StorageError", "Unsupported", "VirtError",
    "load_mapping", "load_timeline", "mapping_table",
    "BOOK_PREFIX", "TEST_PREFIX", "Session", "leftovers", "remove_leftovers", "session",
    "Disk", "DomainSpec", "VolumeSpec", "compare_families", "device_rows", "validate_xml", "Validation", "xml_diff",
]
