"""PNG plots of a capture's analysis, drawn with matplotlib's Agg canvas.

Report stage. matplotlib is imported inside the functions (never at module
top) so that the CLI starts quickly, and figures are built with the
object-oriented ``Figure`` API instead of ``pyplot``: no global backend
switch, no figure registry that leaks memory across a big report, and it
works without a display.

Colours are the same in every plot: client->server blue, server->client
orange, retransmissions red, ACKs green, lost replies grey. Each plot returns
False (and writes nothing) when it would be empty, so a report never shows a
blank chart, and none of them may emit a warning (the tests run with warnings
as errors on every corpus file).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from netdiag.analysis.model import Analysis, IcmpEcho, TcpStream
from netdiag.report.content import ladder_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CLIENT_TO_SERVER = "#1f77b4"
SERVER_TO_CLIENT = "#ff7f0e"
RETRANSMISSION = "#d62728"
ACK_LINE = "#2ca02c"
LOST = "#7f7f7f"
PALETTE = (CLIENT_TO_SERVER, SERVER_TO_CLIENT, ACK_LINE, "#9467bd", "#8c564b", "#e377c2")
MAX_ICMP_DIRECTIONS = 6
MAX_LADDER_ROWS = 40
DPI = 100


def _time_unit(largest_ms: float) -> tuple[float, str]:
    """Milliseconds for short spans, seconds beyond 10 s: tick labels stay short and plain."""
    return (1000.0, "s") if largest_ms > 10_000.0 else (1.0, "ms")


def _new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure

    # Constrained layout fits titles and labels in one draw (bbox_inches="tight" draws twice).
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure: Figure, path: Path) -> None:
    """Write the PNG through a temporary name so a half-written plot never appears."""
    import io

    from netdiag.report.output import atomic_write_bytes

    buffer = io.BytesIO()
    # Fixed metadata: the same analysis gives the same bytes (no version/date stamp).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _finish(
    figure: Figure,
    axes: Axes,
    path: Path,
    title: str,
    labels: tuple[str, str],
) -> None:
    """Title, axis labels, grid and legend the same way on every chart, then save."""
    # Plain tick labels: an offset such as "+6.41e1" in the corner is unreadable at a glance.
    axes.ticklabel_format(axis="both", style="plain", useOffset=False)
    axes.set_title(title)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.grid(True, alpha=0.3)
    # The legend goes under the axes (constrained layout makes room): data can fill any
    # corner, and loc="best" is slow (and warns) on the thousands of points of a big capture.
    figure.legend(loc="outside lower center", ncols=3, fontsize="small")
    _save(figure, path)


def plot_icmp_rtt(analysis: Analysis, path: Path) -> bool:
    """ICMP echo RTT per sequence number, one line per direction, lost requests marked."""
    from matplotlib.ticker import MaxNLocator

    by_direction: dict[tuple[str, str], list[IcmpEcho]] = defaultdict(list)
    for echo in analysis.icmp_echo:
        by_direction[(echo.src, echo.dst)].append(echo)
    if not by_direction:
        return False
    directions = sorted(by_direction.items(), key=lambda item: -len(item[1]))
    directions = directions[:MAX_ICMP_DIRECTIONS]
    figure = _new_figure()
    axes = figure.add_subplot()
    lost_labelled = False
    for index, ((source, destination), echoes) in enumerate(directions):
        colour = PALETTE[index % len(PALETTE)]
        answered = [(echo.seq, echo.rtt_ms) for echo in echoes if echo.rtt_ms is not None]
        lost = [echo for echo in echoes if echo.rtt_ms is None]
        if answered:
            axes.plot(
                [seq for seq, _ in answered],
                [rtt for _, rtt in answered],
                marker="o",
                markersize=4,
                linewidth=1,
                color=colour,
                label=f"{source} → {destination}",
            )
        if lost:
            axes.scatter(
                [echo.seq for echo in lost],
                [0.0] * len(lost),
                marker="x",
                color=LOST if answered else colour,
                label=("no reply" if not lost_labelled else None)
                if answered
                else f"{source} → {destination} (no reply)",
                zorder=3,
                clip_on=False,
            )
            lost_labelled = lost_labelled or bool(answered)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0.0)
    _finish(
        figure,
        axes,
        path,
        "ICMP echo round-trip time per sequence number",
        ("ICMP sequence number", "RTT (ms)"),
    )
    return True


def plot_time_sequence(stream: TcpStream, path: Path) -> bool:
    """tcptrace-style time-sequence graph of the stream's main data direction.

    Each data segment is a vertical bar from its sequence number to seq+len;
    retransmissions are red with a marker; the other side's ACK number is a
    green step line below the bars.
    """
    from matplotlib.collections import LineCollection

    data_direction = "c>s" if stream.bytes_c2s >= stream.bytes_s2c else "s>c"
    segments = [
        point
        for point in stream.seq_points
        if point.dir == data_direction and point.kind != "ack" and point.len > 0
    ]
    if not segments:
        return False
    acks = [
        point for point in stream.seq_points if point.dir != data_direction and point.kind == "ack"
    ]
    scale, unit = _time_unit(max(point.t_ms for point in stream.seq_points))
    figure = _new_figure()
    axes = figure.add_subplot()
    for kind, colour, label in (
        ("data", CLIENT_TO_SERVER if data_direction == "c>s" else SERVER_TO_CLIENT, "data"),
        ("retransmission", RETRANSMISSION, "retransmission"),
    ):
        chosen = [point for point in segments if point.kind == kind]
        if not chosen:
            continue
        lines = [
            [(point.t_ms / scale, point.seq), (point.t_ms / scale, point.seq + point.len)]
            for point in chosen
        ]
        axes.add_collection(LineCollection(lines, colors=colour, linewidths=1.5, label=label))
        if kind == "retransmission":
            axes.scatter(
                [point.t_ms / scale for point in chosen],
                [point.seq + point.len for point in chosen],
                marker="x",
                color=RETRANSMISSION,
                zorder=3,
            )
    if acks:
        axes.step(
            [point.t_ms / scale for point in acks],
            [point.seq for point in acks],
            where="post",
            color=ACK_LINE,
            linewidth=1,
            label="ACK (other side)",
        )
    times = [point.t_ms / scale for point in segments] + [point.t_ms / scale for point in acks]
    sequences = [point.seq for point in segments] + [point.seq + point.len for point in segments]
    sequences += [point.seq for point in acks]
    low_time, high_time = min(times), max(times)
    margin = (high_time - low_time) * 0.03 or 1.0
    axes.set_xlim(low_time - margin, high_time + margin)
    low_seq, high_seq = min(sequences), max(sequences)
    seq_margin = (high_seq - low_seq) * 0.03 or 1.0
    axes.set_ylim(low_seq - seq_margin, high_seq + seq_margin)
    sender = stream.client if data_direction == "c>s" else stream.server
    _finish(
        figure,
        axes,
        path,
        f"TCP stream {stream.stream}: time-sequence graph (data from {sender})",
        (f"time since the stream's first packet ({unit})", "relative sequence number (bytes)"),
    )
    return True


def plot_rtt_samples(analysis: Analysis, streams: list[TcpStream], path: Path) -> bool:
    """Data/ACK RTT samples over capture time, one series per stream and direction."""
    series: list[tuple[str, str, int, list[float], list[float]]] = []
    start = analysis.file.first_ts or 0.0
    for index, stream in enumerate(streams):
        offset_ms = (stream.first_ts - start) * 1000.0
        for direction, marker in (("c>s", "o"), ("s>c", "^")):
            samples = [sample for sample in stream.rtt_samples if sample.dir == direction]
            if not samples:
                continue
            sender = "client→server" if direction == "c>s" else "server→client"
            series.append(
                (
                    f"stream {stream.stream}, data {sender} ({len(samples)})",
                    marker,
                    index,
                    [offset_ms + sample.t_ms for sample in samples],
                    [sample.rtt_ms for sample in samples],
                )
            )
    if not series:
        return False
    scale, unit = _time_unit(max(max(times) for _, _, _, times, _ in series))
    figure = _new_figure()
    axes = figure.add_subplot()
    for label, marker, index, times, rtts in series:
        axes.scatter(
            [time / scale for time in times],
            rtts,
            s=12,
            marker=marker,
            color=PALETTE[index % len(PALETTE)],
            label=label,
        )
    axes.set_ylim(bottom=0.0)
    _finish(
        figure,
        axes,
        path,
        "TCP round-trip time samples (data segment to its ACK)",
        (f"time since the capture's first packet ({unit})", "RTT (ms)"),
    )
    return True


def plot_ladder(stream: TcpStream, path: Path) -> bool:
    """Sequence (ladder) diagram of the handshake and teardown between client and server."""
    entries = stream.timeline[:MAX_LADDER_ROWS]
    if not entries:
        return False
    rows = len(entries)
    figure = _new_figure(8.0, max(2.5, 0.45 * rows + 1.4))
    axes = figure.add_subplot()
    left, right = 0.25, 0.85
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(rows + 0.2, -1.9)
    axes.axis("off")
    axes.vlines([left, right], -0.4, rows, colors="#444444", linewidth=2)
    axes.text(left, -0.6, f"client\n{stream.client}", ha="center", va="bottom", fontsize=9)
    axes.text(right, -0.6, f"server\n{stream.server}", ha="center", va="bottom", fontsize=9)
    for row, entry in enumerate(entries, start=1):
        y = row - 0.3
        client_to_server = entry.dir == "c>s"
        start_x, end_x = (left, right) if client_to_server else (right, left)
        colour = CLIENT_TO_SERVER if client_to_server else SERVER_TO_CLIENT
        if "R" in entry.flags:
            colour = RETRANSMISSION
        axes.annotate(
            "",
            xy=(end_x, y + 0.25),
            xytext=(start_x, y),
            arrowprops={"arrowstyle": "->", "color": colour, "linewidth": 1.5},
        )
        axes.text(
            (left + right) / 2,
            y - 0.05,
            ladder_label(entry),
            ha="center",
            va="bottom",
            fontsize=8,
            color=colour,
        )
        axes.text(0.02, y + 0.12, f"{entry.t_ms:.3f} ms  #{entry.frame}", fontsize=8, va="center")
    axes.set_title(f"TCP stream {stream.stream}: handshake and teardown ({stream.state})")
    _save(figure, path)
    return True
