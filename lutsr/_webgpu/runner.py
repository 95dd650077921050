"""The runner behind ``backend="webgpu"``: prepared tables, per-size buffers, dispatches.

A :class:`WebGPURunner` holds, across frames, its device, one compute
pipeline per shape of stage (:mod:`lutsr._webgpu.shaders`), every stage's
uploaded tables, and per frame size the index maps, buffers and bind groups
(the :data:`SIZE_CACHE` most recent sizes). A call uploads the frames, records
one dispatch per simplex stage (per layered stage, one per layer and chunk of
planes: :mod:`lutsr._webgpu.layered`) and one to pack the bytes, copies the
result to a mappable buffer and reads it back: one submission per chunk of
frames, a chunk being as many frames as the adapter's storage-buffer limit
allows.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..arrays import as_frames, check_image, check_out
from ..indexmaps import padded_index, table_words, tap_indices, window_indices
from ..layered import LayeredStage
from ..model import BASE_BITS, BASE_RADIUS, BASE_SIDE, LUT, Stage, grid_size, sum_shift
from ..rounding import rounding_table
from . import device as _device
from . import layered as _layered
from .shaders import dispatch_size, pack_shader, stage_shader

#: Frame sizes whose buffers and maps a runner keeps.
SIZE_CACHE = 4

# (id(device), stage key) -> (pipeline, binding names); devices live as long as the process
# (lutsr._webgpu.device keeps them), so their ids are never reused.
_pipelines: dict = {}
_pipelines_lock = threading.Lock()


def buffer_limit(device) -> int:
    """Bytes one buffer of a kernel may hold on ``device``: the smaller of its largest
    storage binding and its largest buffer, and below 2**32 (the kernels index in ``u32``)."""
    limits = device.limits
    return min(int(limits["max-storage-buffer-binding-size"]), int(limits["max-buffer-size"]),
               2**32 - 4)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


@dataclass
class _Stage:
    """One simplex stage on the device: its pipeline key and constant buffers."""

    stage: Stage
    key: tuple  # ("simplex", r, P, window, base, packed input): its pipeline
    buffers: dict  # name -> GPUBuffer: words, rounding or base, taps
    s_min: int
    sum_shift: int
    bias: int


@dataclass
class _LayeredStage:
    """One layered stage on the device: its expanded tables (see
    :func:`lutsr._webgpu.layered.stage_tables`) as buffers."""

    stage: LayeredStage
    packed: bool  # whether it reads the model's packed input
    first: object
    low: object
    layers: list  # (tables, shifts or None) per later layer
    up: object


def _shader(key: tuple) -> tuple[str, list | None]:
    """WGSL of the kernel a pipeline key names, and a simplex stage's binding names."""
    kind, *args = key
    if kind == "simplex":
        return stage_shader(*args)
    return {"pack": pack_shader, "first": _layered.first_shader,
            "depthwise": _layered.depthwise_shader, "pointwise": _layered.pointwise_shader,
            "up": _layered.up_shader}[kind](*args), None


@dataclass
class _Frames:
    """Buffers and bind groups for one input size ``(N, H, W, C)``, ``chunk`` frames a
    submission."""

    chunk: int
    src: object  # packed input words
    samples: list  # per stage, its u32 output
    packed: object  # packed output words
    readback: tuple  # mappable copies of ``packed``: two when chunks alternate, else one
    out_samples: int
    groups: list  # per dispatch in order, (pipeline, bind group, workgroups (x, y))


class _Clock:
    """Seconds per phase of a call into ``times`` (nothing when ``times`` is None): each
    lap waits for the queue, so a phase's time includes its work on the device."""

    def __init__(self, queue, fence, times: dict | None):
        self.queue, self.fence, self.times = queue, fence, times
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.times is None:
            return
        # Reading a buffer back waits for all work submitted before it (and flushes
        # pending write_buffer copies); wgpu 0.32's on_submitted_work_done_sync fails.
        self.queue.read_buffer(self.fence, 0, 4)
        now = time.perf_counter()
        self.times[phase] = self.times.get(phase, 0.0) + now - self.last
        self.last = now


class WebGPURunner:
    """Runs a LUT model with WebGPU compute shaders; numpy in, numpy out.

    Parameters
    ----------
    lut : LUT
    adapter : str, optional
        A case-insensitive substring of the adapter's name (see
        :func:`lutsr._webgpu.device.choose`); default the environment variable
        ``LUTSR_WEBGPU_ADAPTER``, else the best hardware adapter.

    Raises
    ------
    RuntimeError
        wgpu is not installed, no adapter fits, or a stage's tables exceed the
        adapter's buffer limit (:func:`buffer_limit`).

    Notes
    -----
    Calls are thread-safe (one at a time per runner); runners of one adapter
    share its device and compiled pipelines.
    """

    def __init__(self, lut: LUT, adapter: str | None = None):
        self.wgpu = _device.import_wgpu()
        self.adapter, self.device = _device.device(adapter)
        self.lut = lut
        self._limit = buffer_limit(self.device)
        self._max_groups = int(self.device.limits["max-compute-workgroups-per-dimension"])
        self._lock = threading.Lock()
        self._stages = [self._upload_stage(s, i == 0) for i, s in enumerate(lut.stages)]
        self._sizes: OrderedDict = OrderedDict()

    # ----------------------------------------------------------------- constants

    def _buffer(self, data: np.ndarray, usage=None):
        data = np.ascontiguousarray(data)
        if data.nbytes > self._limit:
            raise RuntimeError(f"backend 'webgpu': a {_mib(data.nbytes)} table exceeds "
                               f"the adapter's {_mib(self._limit)} storage-buffer limit")
        usage = usage or self.wgpu.BufferUsage.STORAGE
        if data.nbytes == 0:
            data = np.zeros(1, np.int32)
        return self.device.create_buffer_with_data(data=data, usage=usage)

    def _upload_stage(self, stage: Stage | LayeredStage, first: bool):
        if isinstance(stage, LayeredStage):
            tables = _layered.stage_tables(stage)
            return _LayeredStage(
                stage, first, self._buffer(tables["first"]), self._buffer(tables["low"]),
                [(self._buffer(t), None if sh is None else self._buffer(sh))
                 for t, sh in tables["layers"]], self._buffer(tables["up"]))
        interval = self.lut.interval
        has_base = stage.base is not None
        window = 0 if stage.taps is None else stage.taps.shape[2]
        buffers = {"words": self._buffer(table_words(stage).view(np.uint32))}
        s_min = shift = bias = 0
        if has_base:
            buffers["base"] = self._buffer(stage.base.reshape(-1).astype(np.int32))
            shift, bias = BASE_BITS - sum_shift(stage, interval), int(stage.bias)
        else:
            table, s_min = rounding_table(stage, interval)
            buffers["rounding"] = self._buffer(table.astype(np.uint32))  # a word per entry
        if window:
            buffers["taps"] = self._buffer(
                stage.taps.reshape(*stage.taps.shape[:2], -1).astype(np.int32))
        key = ("simplex", stage.r, len(stage.patterns), window, has_base, first)
        return _Stage(stage, key, buffers, s_min, shift, bias)

    def _pipeline(self, key):
        # Shared by every runner on the device: a shape of stage compiles once.
        with _pipelines_lock:
            found = _pipelines.get((id(self.device), key))
            if found is None:
                code, bindings = _shader(key)
                module = self.device.create_shader_module(code=code)
                pipeline = self.device.create_compute_pipeline(
                    layout="auto", compute={"module": module, "entry_point": "main"})
                found = _pipelines[(id(self.device), key)] = pipeline, bindings
            return found

    # ----------------------------------------------------------------- per size

    def _params(self, fields=("total", "height", "width", "channels", "interval", "grid", "rows",
                              "s_min", "sum_shift", "bias", "cols_at", "base_rows_at",
                              "base_cols_at", "pad0", "pad1", "pad2"), **values):
        data = np.array([values.get(f, 0) for f in fields], np.int64).astype(np.int32)
        return self.device.create_buffer_with_data(data=data, usage=self.wgpu.BufferUsage.UNIFORM)

    def _chunk(self, h: int, w: int, c: int) -> int:
        """Frames per submission: as many as fit every buffer within the binding limit."""
        per_frame = [-(-h * w * c // 4) * 4]
        for st in self._stages:
            h, w = h * st.stage.r, w * st.stage.r
            per_frame.append(h * w * c * 4)
        biggest = max(per_frame)
        if biggest > self._limit:
            raise RuntimeError(f"backend 'webgpu': one frame needs a {_mib(biggest)} "
                               f"buffer, over the adapter's {_mib(self._limit)} "
                               "storage-buffer limit; use a smaller frame or backend 'numba'")
        return max(1, self._limit // biggest)

    def _frames(self, n: int, h: int, w: int, c: int) -> _Frames:
        key = (n, h, w, c)
        found = self._sizes.get(key)
        if found is not None:
            self._sizes.move_to_end(key)
            return found
        usage = self.wgpu.BufferUsage
        chunk = min(n, self._chunk(h, w, c))
        src = self.device.create_buffer(size=-(-chunk * h * w * c // 4) * 4,
                                        usage=usage.STORAGE | usage.COPY_DST)
        groups, samples = [], []
        prev, ph, pw = src, h, w
        for st in self._stages:
            stage = st.stage
            oh, ow = ph * stage.r, pw * stage.r
            dst = self.device.create_buffer(size=chunk * oh * ow * c * 4, usage=usage.STORAGE)
            samples.append(dst)
            if isinstance(st, _LayeredStage):
                groups += self._layered_groups(st, prev, dst, chunk * c, ph, pw, c)
                prev, ph, pw = dst, oh, ow
                continue
            if stage.taps is None:
                rows, cols = tap_indices(stage, ph, pw)
            else:
                rows, cols = window_indices(stage, ph, pw)
            # One buffer of index maps: rows, columns, then the base's rows and columns.
            maps = [rows.ravel(), cols.ravel()]
            if stage.base is not None:
                maps += [np.stack([padded_index(m, stage.padding, BASE_RADIUS)[d:d + m]
                                   for d in range(BASE_SIDE)]).ravel() for m in (ph, pw)]
            starts = np.cumsum([0] + [len(m) for m in maps])
            total = chunk * ph * pw * c
            params = self._params(total=total, height=ph, width=pw, channels=c,
                                  interval=self.lut.interval, grid=grid_size(self.lut.interval),
                                  rows=stage.rows, s_min=st.s_min, sum_shift=st.sum_shift,
                                  bias=st.bias, cols_at=starts[1],
                                  base_rows_at=starts[2] if len(maps) > 2 else 0,
                                  base_cols_at=starts[3] if len(maps) > 2 else 0)
            named = {"params": params, "src": prev, "dst": dst, **st.buffers,
                     "maps": self._buffer(np.concatenate(maps).astype(np.int32))}
            pipeline, bindings = self._pipeline(st.key)
            group = self._bind(pipeline, [named[b] for b in bindings])
            groups.append((pipeline, group, dispatch_size(total, self._max_groups)))
            prev, ph, pw = dst, oh, ow
        out_samples = chunk * ph * pw * c
        packed = self.device.create_buffer(size=-(-out_samples // 4) * 4,
                                           usage=usage.STORAGE | usage.COPY_SRC)
        pipeline, _ = self._pipeline(("pack",))
        group = self._bind(pipeline, [self._params(total=out_samples), prev, packed])
        groups.append((pipeline, group, dispatch_size(-(-out_samples // 4), self._max_groups)))
        readback = tuple(self.device.create_buffer(size=packed.size,
                                                   usage=usage.MAP_READ | usage.COPY_DST)
                         for _ in range(2 if chunk < n else 1))
        frames = _Frames(chunk, src, samples, packed, readback, out_samples, groups)
        self._sizes[key] = frames
        while len(self._sizes) > SIZE_CACHE:
            self._sizes.popitem(last=False)
        return frames

    def _layered_groups(self, st: _LayeredStage, src, dst, planes: int, h: int, w: int,
                        c: int) -> list:
        """The dispatches of one layered stage over ``planes`` image planes of ``h x w``, in
        chunks of planes whose two feature buffers each fit the binding limit."""
        channels = st.stage.channels
        per_plane = _layered.feature_words(channels, h, w) * 4
        if per_plane > self._limit:
            raise RuntimeError(f"backend 'webgpu': one {w}x{h} plane of a layered stage needs "
                               f"{_mib(per_plane)} of features, over the adapter's "
                               f"{_mib(self._limit)} storage-buffer limit; use a "
                               "smaller frame or backend 'numba'")
        chunk = min(planes, self._limit // per_plane)
        usage = self.wgpu.BufferUsage.STORAGE
        feats = [self.device.create_buffer(size=chunk * per_plane, usage=usage) for _ in "ab"]
        fields = ("total", "height", "width", "in_channels", "plane0", "pad0", "pad1", "pad2")
        groups = []

        def add(key, count, buffers):
            pipeline, _ = self._pipeline(key)
            groups.append((pipeline, self._bind(pipeline, buffers),
                           dispatch_size(count, self._max_groups)))

        for plane0 in range(0, planes, chunk):
            count = min(chunk, planes - plane0)
            rotated = self._params(fields, total=count * 4 * h * w, height=h, width=w,
                                   in_channels=c, plane0=plane0)
            a, b = feats
            add(("first", channels, st.packed), count * 4 * h * w,
                [rotated, src, a, st.first, st.low])
            for tables, shifts in st.layers:
                if shifts is None:
                    add(("depthwise", channels), count * 4 * h * w, [rotated, a, b, tables])
                else:
                    add(("pointwise", channels), count * 4 * h * w,
                        [rotated, a, b, tables, shifts])
                a, b = b, a
            plain = self._params(fields, total=count * h * w, height=h, width=w,
                                 in_channels=c, plane0=plane0)
            add(("up", channels, st.stage.r), count * h * w, [plain, a, dst, st.up])
        return groups

    def _bind(self, pipeline, buffers):
        return self.device.create_bind_group(
            layout=pipeline.get_bind_group_layout(0),
            entries=[{"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
                     for i, b in enumerate(buffers)])

    # ----------------------------------------------------------------- running

    def run(self, frames: np.ndarray, out: np.ndarray, times: dict | None = None) -> None:
        """Upscale ``frames`` (N, H, W, C) uint8 into ``out`` (N, H*s, W*s, C) uint8.

        Parameters
        ----------
        frames, out : ndarray of uint8
        times : dict, optional
            When given, the device is waited for after each phase and the
            seconds of each are added to ``times["upload"]``, ``["kernels"]``
            and ``["readback"]`` (for benchmarks: the waits cost time).
        """
        n, h, w, c = frames.shape
        with self._lock:
            bufs = self._frames(n, h, w, c)
            # Chunk i + 1 is submitted before chunk i is read back, into the other
            # read-back buffer, so the device computes while the host copies out. (The
            # queue runs in order: chunk i's copy to its read-back buffer precedes
            # chunk i + 1's upload and kernels, which reuse the other buffers.)
            pending = None
            for i, start in enumerate(range(0, n, bufs.chunk)):
                stop = min(n, start + bufs.chunk)
                clock = _Clock(self.device.queue, bufs.packed, times)
                readback = bufs.readback[i % len(bufs.readback)]
                self._submit(bufs, frames[start:stop], readback, clock)
                if times is not None:  # timed: each phase on its own
                    self._read(readback, out[start:stop], clock)
                    continue
                if pending is not None:
                    self._read(*pending)
                pending = readback, out[start:stop], clock
            if pending is not None:
                self._read(*pending)

    def _submit(self, bufs: _Frames, frames: np.ndarray, readback, clock: _Clock) -> None:
        """Queue a chunk's upload, kernels and copy into ``readback``."""
        queue = self.device.queue
        data = np.ascontiguousarray(frames).reshape(-1)
        pad = -len(data) % 4  # write_buffer takes whole words
        if pad:
            data = np.concatenate([data, np.zeros(pad, np.uint8)])
        queue.write_buffer(bufs.src, 0, data)
        clock.lap("upload")
        encoder = self.device.create_command_encoder()
        cpass = encoder.begin_compute_pass()
        # A chunk shorter than the buffers' (the last one) still runs the full
        # dispatches: the extra invocations read and write only the buffers.
        for pipeline, group, (gx, gy) in bufs.groups:
            cpass.set_pipeline(pipeline)
            cpass.set_bind_group(0, group)
            cpass.dispatch_workgroups(gx, gy, 1)
        cpass.end()
        if clock.times is not None:
            queue.submit([encoder.finish()])
            clock.lap("kernels")
            encoder = self.device.create_command_encoder()
        encoder.copy_buffer_to_buffer(bufs.packed, 0, readback, 0, bufs.packed.size)
        queue.submit([encoder.finish()])

    def _read(self, readback, out: np.ndarray, clock: _Clock) -> None:
        """Wait for a chunk's copy into ``readback`` and copy it into ``out``."""
        readback.map_sync(self.wgpu.MapMode.READ)
        try:
            raw = np.frombuffer(readback.read_mapped(copy=False), np.uint8)
            out[...] = raw[:out.size].reshape(out.shape)
        finally:
            readback.unmap()
        clock.lap("readback")

    def up(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Upscale a numpy image: see :func:`lutsr.upscale` for the layouts."""
        frames, out_shape = check_image(img, self.lut.scale)
        if out is None:
            out = np.empty(out_shape, np.uint8)
        else:
            check_out(out, out_shape, img)
        self.run(frames, as_frames(out))
        return out
