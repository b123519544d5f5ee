"""Storage behind a libvirt connection: pools and the volumes (disk images) in them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from lab.virt.errors import StorageError, libvirt_module, translate
from lab.virt.spec import VolumeSpec

if TYPE_CHECKING:
    from lab.virt.connection import Connection


def pool_path(raw_pool: Any) -> str | None:
    try:
        return ET.fromstring(raw_pool.XMLDesc(0)).findtext("target/path")
    except Exception:
        return None


class Pool:
    """A storage pool; ``owned`` when this code created it (and must destroy it)."""

    def __init__(self, conn: Connection, raw: Any, owned: bool) -> None:
        self.conn, self.raw, self.owned = conn, raw, owned
        self.name = raw.name()

    def __repr__(self) -> str:
        return f"<Pool {self.name} owned={self.owned}>"

    def volume_names(self) -> list[str]:
        self.conn.call("pool-refresh", self.raw.refresh, 0, subject=self.name)
        return sorted(self.conn.call("volume-list", self.raw.listVolumes, subject=self.name))

    def create_volume(self, spec: VolumeSpec) -> Volume:
        """``virsh vol-create-as``: a new volume (qcow2 grows on demand)."""
        if spec.name in self.volume_names():
            raise StorageError(
                f"volume-create {spec.name!r} failed on {self.conn.uri}: pool {self.name!r} already has it -> "
                f"choose another name or delete it (virsh vol-delete {spec.name} --pool {self.name})",
                uri=self.conn.uri, operation="volume-create")
        raw = self.conn.call("volume-create", self.raw.createXML, spec.to_xml(), 0, subject=spec.name)
        return Volume(self, raw)

    def release(self) -> bool:
        """Destroy the pool if this code created it and it holds no volume; True if destroyed."""
        if not self.owned or self.raw is None:
            return False
        if self.volume_names():
            return False
        self.conn.call("pool-destroy", self.raw.destroy, subject=self.name)
        self.raw = None
        return True


class Volume:
    """A volume in a pool (a disk image file for directory pools)."""

    def __init__(self, pool: Pool, raw: Any) -> None:
        self.pool, self.raw = pool, raw
        self.name = raw.name()
        self.path = raw.path()

    def __repr__(self) -> str:
        return f"<Volume {self.name} in {self.pool.name}: {self.path}>"

    def info(self) -> dict[str, object]:
        kind, capacity, allocation = self.pool.conn.call("volume-info", self.raw.info, subject=self.name)
        fmt = ET.fromstring(self.raw.XMLDesc(0)).find("target/format")
        return {"name": self.name, "path": self.path, "format": fmt.get("type") if fmt is not None else None,
                "capacity_bytes": capacity, "allocation_bytes": allocation}

    def delete(self) -> None:
        """``virsh vol-delete``.

        Sessions share the book's transient pool; if another session stopped
        it meanwhile, the volume is looked up again through an active pool
        (made again if need be, and stopped again afterwards).
        """
        libvirt = libvirt_module()
        conn = self.pool.conn
        try:
            self.raw.delete(0)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_OPERATION_INVALID):
                raise translate(exc, operation="volume-delete", uri=conn.uri, subject=self.name) from exc
        pool = conn.pool()
        try:
            raw = conn.call("volume-lookup", pool.raw.storageVolLookupByName, self.name, subject=self.name)
            conn.call("volume-delete", raw.delete, 0, subject=self.name)
        finally:
            pool.release()
