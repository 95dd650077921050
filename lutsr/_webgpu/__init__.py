"""WebGPU backend (wgpu-py, WGSL compute shaders): ``backend="webgpu"``.

Runs on any adapter wgpu finds (Vulkan, Metal, Direct3D 12), bit for bit
:mod:`lutsr.reference`, simplex and layered stages alike. :mod:`.device`
picks the adapter, :mod:`.shaders` and :mod:`.layered` write the kernels,
:mod:`.runner` keeps the device state across frames.
Importing this package does not import wgpu; creating a runner does.
"""

from .device import ADAPTER_ENV, adapters, choose, describe
from .runner import WebGPURunner

__all__ = ["ADAPTER_ENV", "WebGPURunner", "adapters", "choose", "describe"]
