"""The machine's load for Monitor's device panel: CPU and RAM (psutil) and each GPU's utilisation and memory
(nvidia-ml-py, where it and a driver are present; the panel shows less otherwise). Memory in GiB, written `G` to
fit the side panel at 80 columns on one line. No Textual here."""

from __future__ import annotations

_NVML_STATE = "unknown"  # NVML (nvidia-ml-py): unknown until first tried, then ready or absent
_CPU_SAMPLED = False  # psutil measures CPU load between two calls: the first has nothing to compare with


def device_summary() -> str:
    """CPU and RAM (psutil) and, where NVML is present, each GPU's utilisation and memory."""
    lines = []
    try:
        import psutil

        global _CPU_SAMPLED
        memory = psutil.virtual_memory()
        cpu = psutil.cpu_percent()  # since the last call
        cpu_text = f"{cpu:.0f}%" if _CPU_SAMPLED else "…"  # the first call's 0.0 is no reading (it said `CPU 0%`)
        _CPU_SAMPLED = True
        lines.append(f"CPU {cpu_text} · RAM {memory.used / 2**30:.1f}/{memory.total / 2**30:.0f}G")
    except ImportError:
        pass
    lines.extend(gpu_lines())
    return "\n".join(lines)


def gpu_lines() -> list[str]:
    """One line per GPU from nvidia-ml-py; nothing where it or a driver is absent."""
    global _NVML_STATE
    if _NVML_STATE == "absent":
        return []
    try:
        import pynvml

        if _NVML_STATE == "unknown":  # initialised once, not on every refresh
            pynvml.nvmlInit()
            _NVML_STATE = "ready"
        lines = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            device = pynvml.nvmlDeviceGetHandleByIndex(index)
            util = pynvml.nvmlDeviceGetUtilizationRates(device)
            memory = pynvml.nvmlDeviceGetMemoryInfo(device)
            lines.append(f"GPU{index} {util.gpu}% · {memory.used / 2**30:.1f}/{memory.total / 2**30:.0f}G")
        return lines
    except Exception:  # noqa: BLE001 - no package, no driver, no permission: the panel just shows less
        _NVML_STATE = "absent"
        return []
