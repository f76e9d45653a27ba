"""Where and how the numerics run: device, precision, memory format (device), GPU slots (gpus).

Training and inference both use it, so it sits below both.
"""
