"""The model that joins the VMExit and virtio chapters: exits per request x cost per exit + work.

For every I/O path and batch size of one io recording::

    cycles per request = user-space exits per request x cost of a user-space exit
                       + in-kernel exits per request  x cost of an in-kernel exit
                       + work per request
    requests per second = TSC rate / cycles per request

Exits per request are counted (exact on every back end). The costs per exit
are the same host's exits recording net of its own empty loop; the work per
request is calibrated once, on the point with the fewest exits (virtio +
ioeventfd at the largest batch), and used for every path.

What the costs are depends on the back end (:mod:`lab.analysis.measures`).
On VT-x / AMD-V they are exit costs, and replacing them by the published
bare-metal figures predicts what the same requests would do on bare metal.
On PVM they are the cost of one exiting operation under KVM's instruction
emulator, and the work per request is mostly emulation: putting bare-metal
exit costs on top of that work predicts nothing. There the comparison with
bare metal is :meth:`Model.bare_metal_overhead`: the exit cycles one request
would carry on bare metal (exits per request x published costs), set beside
the cycles the request took here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lab.analysis.measures import Capabilities, capabilities
from lab.analysis.vmexit import ExitFacts, Published, published_costs

#: The modes whose notifications KVM completes in the kernel (an ioeventfd), not in the VMM.
KERNEL_KICKS = ("virtio_ioeventfd",)
#: The calibration point of the work per request: the path with the fewest exits, at its largest batch.
CALIBRATION_MODE = "virtio_ioeventfd"
#: Measured / predicted within this band reads as "the model holds".
AGREE = 0.15


@dataclass(frozen=True)
class ExitCosts:
    """Cycles of one user-space exit and one in-kernel exit, and where they come from."""

    user: float       #: an ``out`` that returns to the VMM
    kernel: float     #: an ``out`` that an ioeventfd completes in the kernel
    source: str       #: ``recorded``, ``live`` or ``published``
    host_id: str = ""  #: the host they were measured on (for ``published``: whose round trip was added)
    kvm_backend: str = ""  #: that host's back end
    round_trip: float = 0.0  #: for ``published``: the host's user-space round trip added to the published exit

    @property
    def exit_costs(self) -> bool:
        """True where these are exit costs (hardware back ends, published bare metal)."""
        return self.source == "published" or capabilities(self.kvm_backend).exit_costs


def costs_of(exits: ExitFacts, source: str = "recorded") -> ExitCosts:
    """The costs of ``exits``: pio_user and pio_ioeventfd net of the same recording's empty loop."""
    missing = {"pio_user", "pio_ioeventfd"} - set(exits.net)
    if missing:
        raise ValueError(f"the exits recording of {exits.host_id} lacks {sorted(missing)}")
    return ExitCosts(exits.net["pio_user"], exits.net["pio_ioeventfd"], source, exits.host_id,
                     exits.backend.backend)


def published_exit_costs(own: ExitCosts, figures: Published | None = None) -> ExitCosts:
    """Bare-metal KVM's published ``cpuid`` exit (the middle of its range) for an in-kernel exit, and that
    plus ``own``'s user-space round trip for an exit to user space.

    No bare-metal figure for an exit to user space is in ``data/published``; the part a user-space exit
    adds to an in-kernel one (back to the VMM process and in again) is the round trip measured on
    ``own``'s host, a quantity sound on every back end.
    """
    pub = figures or published_costs()
    trip = max(own.user - own.kernel, 0.0)
    return ExitCosts(pub.cpuid_bare_mid + trip, pub.cpuid_bare_mid, "published", own.host_id, own.kvm_backend,
                     trip)


def exits_per_request(io_rows: pd.DataFrame) -> pd.DataFrame:
    """Per mode and batch of one io recording: user-space and in-kernel exits per request, measured cycles."""
    f = io_rows
    if f.empty:
        raise ValueError("no io rows")
    for col, what in (("host_id", "host"), ("recorded_at", "recording")):
        if f[col].nunique() != 1:
            raise ValueError(f"io rows of one {what} expected, got {sorted(map(str, f[col].unique()))}")
    hz = f["tsc_khz"].astype(float) * 1000.0
    kicks = f["kicks_per_run"].astype(float) / f["count"].astype(float)
    in_kernel = f["mode"].isin(KERNEL_KICKS)
    return pd.DataFrame({
        "mode": f["mode"].astype(str), "batch": f["batch"].astype(int), "tsc_hz": hz,
        "user_epr": f["exits_per_request"].astype(float),
        "kernel_epr": kicks.where(in_kernel, 0.0),
        "measured_rps": f["requests_per_s"].astype(float),
        "measured_cycles": hz / f["requests_per_s"].astype(float),
    }).sort_values(["mode", "batch"]).reset_index(drop=True)


@dataclass(frozen=True)
class Miss:
    """Where the model with the host's own costs misses most among the paths with user-space exits."""

    mode: str
    batch: int
    ratio: float            #: measured / predicted requests per second
    extra_cycles: float     #: measured minus predicted cycles per request (positive: slower than predicted)
    per_user_exit: float    #: that extra per user-space exit
    over_exit: float        #: per_user_exit / the cost of one user-space exit

    @property
    def holds(self) -> bool:
        return abs(self.ratio - 1) <= AGREE


@dataclass(frozen=True)
class Overhead:
    """The exit overhead per request on bare metal, against the cycles a request took on this host."""

    mode: str
    batch: int
    exit_cycles: float       #: exits per request x published costs
    measured_cycles: float   #: cycles per request measured on the io host

    @property
    def share(self) -> float:
        return self.exit_cycles / self.measured_cycles


class Model:
    """The model over one io recording with the same host's costs (``own``)."""

    def __init__(self, io_rows: pd.DataFrame, own: ExitCosts, kvm_backend: str | None):
        self.table = exits_per_request(io_rows)
        if CALIBRATION_MODE not in set(self.table["mode"]):
            raise ValueError(f"the io recording has no {CALIBRATION_MODE} rows to calibrate the work per request")
        self.own = own
        self.backend: Capabilities = capabilities(kvm_backend)
        self.host_id = str(io_rows["host_id"].iloc[0])

    @property
    def published_prediction_sound(self) -> bool:
        """Whether swapping in bare-metal exit costs predicts anything (the work per request runs natively)."""
        return self.backend.exit_costs

    def work(self) -> float:
        """Cycles per request that are not exits, from the calibration point and the host's own costs."""
        e = self.table
        cal = e[e["mode"] == CALIBRATION_MODE].sort_values("batch").iloc[-1]
        return float(cal["measured_cycles"] - cal["user_epr"] * self.own.user - cal["kernel_epr"] * self.own.kernel)

    @property
    def calibration_batch(self) -> int:
        return int(self.table[self.table["mode"] == CALIBRATION_MODE]["batch"].max())

    def predict(self, costs: ExitCosts) -> pd.DataFrame:
        """The exits table plus predicted cycles and requests/s with ``costs``, and measured / predicted."""
        if costs.source == "published" and not self.published_prediction_sound:
            raise ValueError(f"on {self.backend.backend} the work per request is emulation: published bare-metal "
                             "costs on top of it predict nothing (use bare_metal_overhead)")
        e = self.table.copy()
        e["exit_cycles"] = e["user_epr"] * costs.user + e["kernel_epr"] * costs.kernel
        e["predicted_cycles"] = e["exit_cycles"] + self.work()
        e["predicted_rps"] = e["tsc_hz"] / e["predicted_cycles"]
        e["measured_over_predicted"] = e["measured_rps"] / e["predicted_rps"]
        return e

    def ratios(self) -> tuple[int, dict[str, float], int, float | None]:
        """Measured / predicted (own costs): per mode at the smallest batch, and virtio at the largest."""
        p = self.predict(self.own)
        small, large = int(p["batch"].min()), int(p["batch"].max())
        first = p[p["batch"] == small].set_index("mode")["measured_over_predicted"].astype(float).to_dict()
        last = p[(p["batch"] == large) & (p["mode"] == "virtio")]["measured_over_predicted"]
        return small, first, large, float(last.iloc[0]) if len(last) else None

    def worst_miss(self) -> Miss | None:
        """The path with user-space exits that the model misses most at the smallest batch."""
        p = self.predict(self.own)
        small = int(p["batch"].min())
        first = p[(p["batch"] == small) & (p["user_epr"] > 0)].set_index("mode")
        if first.empty:
            return None
        mode = str((first["measured_over_predicted"] - 1).abs().idxmax())
        row = first.loc[mode]
        extra = float(row["measured_cycles"]) - float(row["predicted_cycles"])
        per_exit = extra / float(row["user_epr"])
        return Miss(mode, small, float(row["measured_over_predicted"]), extra, per_exit,
                    per_exit / self.own.user if self.own.user > 0 else 0.0)

    def ioeventfd_waits(self) -> bool:
        """Whether virtio + ioeventfd at the smallest batch falls short of the prediction by more than the band:
        that path has no user-space exit, so what it misses is the guest waiting for the device thread."""
        p = self.predict(self.own)
        row = p[(p["batch"] == p["batch"].min()) & (p["mode"] == CALIBRATION_MODE)]
        return not row.empty and float(row["measured_over_predicted"].iloc[0]) < 1 - AGREE

    def published_effect(self, published: ExitCosts) -> tuple[str, float, float]:
        """Where bare-metal costs change the prediction most (hardware back ends only): the mode, the
        factor on predicted requests/s, and the largest share of exits in a predicted request."""
        p_own, p_pub = self.predict(self.own), self.predict(published)
        ratio = p_pub["predicted_rps"] / p_own["predicted_rps"]
        i = int(ratio.map(lambda r: abs(r - 1) if r >= 1 else abs(1 / r - 1)).idxmax())
        share = float((p_own["exit_cycles"] / p_own["predicted_cycles"]).max())
        return str(p_own.loc[i, "mode"]), float(ratio.loc[i]), share

    def bare_metal_overhead(self, published: ExitCosts) -> list[Overhead]:
        """Per mode and batch: the exit cycles one request would carry on bare metal, beside its cycles here."""
        e = self.table
        return [Overhead(str(m), int(b), float(u * published.user + k * published.kernel), float(c))
                for m, b, u, k, c in zip(e["mode"], e["batch"], e["user_epr"], e["kernel_epr"],
                                         e["measured_cycles"], strict=True)]


def model(io_rows: pd.DataFrame, exits: ExitFacts, kvm_backend: str | None) -> Model:
    """The model of one host's io recording with that host's own exits recording."""
    if exits.host_id != str(io_rows["host_id"].iloc[0]):
        raise ValueError(f"io rows of {io_rows['host_id'].iloc[0]} with the exits of {exits.host_id}: "
                         "the model needs one host's data set")
    return Model(io_rows, costs_of(exits), kvm_backend)

