"""What each chapter needs from the recordings, and its data set (:mod:`lab.bench.dataset`).

A page's functions all take their numbers from :func:`data`, so one page
shows one host: the live measurement on a KVM host, otherwise the recorded
host that :func:`lab.bench.dataset.data_set` chooses for the resources
listed here (``LAB_RECORDED_HOST`` names another). Pages that compare every
recorded host use :func:`lab.bench.dataset.every_host` with the same list.
"""

from __future__ import annotations

from pathlib import Path

from lab.bench import dataset

#: The recorded resources each chapter shows, by page (the chapter's file name).
NEEDS: dict[str, tuple[str, ...]] = {
    "kvm": ("cells", "tour"),  # the %%kvm cells' outputs; the misbehaving guests of every host
    "vmexit": ("exits", "native", "reference"),
    "virtio": ("io", "exits", "qemu-io"),  # the hands-on virtio_vs_emulated page shows this chapter's data set
}


def data(page: str, root: str | Path | None = None, live: bool | None = None) -> dataset.DataSet:
    """The data set of ``page`` (``live=False``: the recorded host even on a KVM host)."""
    return dataset.data_set(NEEDS[page], root=root, live=live)


def every_host(page: str, root: str | Path | None = None) -> list[dataset.DataSet]:
    """Each recorded host's data set for ``page``, for the tables and figures that compare hosts."""
    return dataset.every_host(NEEDS[page], root=root)
