"""The replay's report: the markdown table and the plot of `replay.json` (`experiments.replay`)."""

from __future__ import annotations

from typing import Any


def table(payload: dict[str, Any]) -> str:
    """A markdown table of one replay (one row per router)."""
    lines = ["| router | long-run acc | windows < τ−0.02 | min window | recovery | cost (USD) "
             "| cost vs certified |", "|---|---|---|---|---|---|---|"]
    for name, s in payload["routers"].items():
        lines.append(f"| {name} | {s['long_run_accuracy']:.4f} | {s['share_windows_below']:.3f} "
                     f"| {s['min_window_accuracy']:.4f} | {s['recovery']} | "
                     f"{s['long_run_cost']:.3g} | {s['cost_vs_static_certified']:.3f} |")
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: str) -> None:
    """Windowed accuracy with the τ line, the online τ' (offset), and windowed cost."""
    import matplotlib  # noqa: PLC0415 (plotting only when asked)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tau = payload["tau"]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for name, s in payload["routers"].items():
        w = s["windows"]
        axes[0].plot(w["end"], w["accuracy"], label=name)
        axes[2].plot(w["end"], w["cost"], label=name)
    if "online" in payload["routers"]:  # τ' is not visible through HTTP
        online = payload["routers"]["online"]["windows"]
        axes[1].plot(online["end"], online["operating_tau"], color="C2", label="online τ'")
    for name, point in payload["static_points"].items():
        if point["operating_tau"] is not None:  # a fixed-model point has no τ' to draw
            axes[1].axhline(point["operating_tau"], ls=":",
                            color="C0" if name == "static" else "C1", label=f"{name} τ'")
    axes[0].axhline(tau, color="k", lw=1, label="τ")
    axes[0].axhline(tau - payload["config"]["tolerance"], color="k", lw=1, ls="--",
                    label="τ − 0.02")
    for ax in axes:
        for shift in payload["shifts"]:
            ax.axvline(shift, color="grey", ls="-.", lw=1)
        ax.legend(fontsize=7)
    window = payload["config"]["window"]
    axes[0].set_ylabel(f"accuracy (last {window} requests)")
    axes[1].set_ylabel("operating τ' (window mean)")
    axes[2].set_ylabel("USD per request")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("request")
    axes[0].set_title(f"{payload['scenario']}, τ = {tau}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
