"""The contract between the guest programs and the device models: ports and addresses.

Everything here is what a real machine would put in a datasheet: the I/O ports
of the three toy devices and where the guest programs keep their parameters,
their PV request record and their virtqueue. The guest code in
:mod:`lab.devices.guests` uses these numbers as immediates; a test checks that
the assembled bytes and these constants agree.

Guest-physical memory of an I/O run (32-bit flat protected mode, no paging)::

    0x0000_8000  PARAMS     parameter block (below)
    0x0000_8100  PV_RECORD  the PV request record {u64 addr; u32 len; u32 status}
    0x0001_0000  VQ_DESC    virtqueue descriptor table (QUEUE_SIZE x 16 bytes)
    0x0001_1000  VQ_AVAIL   available ring
    0x0001_2000  VQ_USED    used ring
    0x0002_0000  DATA       the payload: request i is DATA + i*S .. DATA + (i+1)*S

The guest code itself is position independent and loaded wherever the VMM
puts its entry point (below PARAMS).
"""

from __future__ import annotations

# --- I/O ports (none of them is handled inside the kernel) --------------------------------
HVM_CMD = 0x0600     #: emulated device: "a request of <eax> bytes follows" (out, 4 bytes)
HVM_DATA = 0x0604    #: emulated device: one dword of payload (out, 4 bytes)
HVM_STATUS = 0x0608  #: emulated device: status byte (in, 1 byte): 0 = done, else error
PV_PORT = 0x0610     #: PV device: "handle the request record at <eax>" (out, 4 bytes)
VIRTIO_NOTIFY = 0x0620  #: virtio device: queue notification, value = queue index (out, 2 bytes)
VIRTIO_NOTIFY_SIZE = 2

# --- guest-physical layout ------------------------------------------------------------------
PARAMS = 0x8000
PV_RECORD = 0x8100
VQ_DESC = 0x10000
VQ_AVAIL = 0x11000
VQ_USED = 0x12000
QUEUE_SIZE = 256
VQ_USED_EVENT = VQ_AVAIL + 4 + 2 * QUEUE_SIZE   #: avail ring's last field, written by the driver
VQ_AVAIL_EVENT = VQ_USED + 4 + 8 * QUEUE_SIZE   #: used ring's last field, written by the device
DATA = 0x20000

# --- parameter block: offsets from PARAMS (u32 unless noted) ---------------------------------
P_COUNT = 0        #: in: number of requests N
P_SIZE = 4         #: in: bytes per request S (a multiple of 4)
P_BATCH = 8        #: in: requests per notification (virtio); 1..QUEUE_SIZE
P_DATA = 12        #: in: guest-physical address of the payload
P_TSC_START = 16   #: out: u64 rdtsc before the first request
P_TSC_END = 24     #: out: u64 rdtsc after the last request
P_DONE = 32        #: out: requests the guest saw completed
P_ERRORS = 36      #: out: requests the device answered with an error status
P_KICKS = 40       #: out: notifications the guest made (virtio)
P_EVENT_IDX = 44   #: in: 1 when VIRTIO_F_EVENT_IDX is negotiated (kick by avail_event), else 0 (by used.flags)
P_KICKED_IDX = 48  #: the guest's own: avail.idx when it last decided whether to kick
PARAMS_SIZE = 52

# --- PV request record (offsets from PV_RECORD) -----------------------------------------------
R_ADDR = 0     #: u64 guest-physical address of the data
R_LEN = 8      #: u32 length in bytes
R_STATUS = 12  #: u32 written by the device: 0 = done
PV_RECORD_SIZE = 16
PV_PENDING = 0xFFFFFFFF

# --- status codes (emulated status register and PV record) ------------------------------------
ST_OK = 0
ST_BAD_RANGE = 1    #: the data is not inside guest memory
ST_TOO_LONG = 2     #: longer than MAX_REQUEST
ST_PROTOCOL = 3     #: register accessed out of order

MAX_REQUEST = 64 * 1024  #: the largest request any toy device accepts

MEMORY_MIN = DATA  #: guest memory must reach at least this far


def memory_size_for(count: int, size: int) -> int:
    """Guest memory (bytes, a multiple of 64 KiB) that holds N requests of S bytes."""
    need = DATA + count * size
    return (need + 0xFFFF) // 0x10000 * 0x10000
