"""Built-in hardware backends: one module per kind of hardware (RAPL, NVML, powermetrics...)."""
