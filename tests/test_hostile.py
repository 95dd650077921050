"""A hostile user's inputs: extreme-but-valid models, files that ask for too much, bad arrays,
and command-line mistakes. Each fails cleanly (one exception type that names the problem, one
line on the command line) or works exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    HANG_GUARD_S,
    assert_images_equal,
    extreme_stage,
    random_lut,
    reseal_lut_bytes,
    split_lut_bytes,
    with_header,
)

import lutsr
from lutsr import LUT, Stage
from lutsr.cli import main
from lutsr.fileformat import MAGIC, LUTFormatError, from_bytes, to_bytes
from lutsr.model import DIVISOR_RANGE, MAX_BIAS, MAX_SCALE, MAX_STAGES
from lutsr.reference import upscale_reference

# ----------------------------------------------------------------------- exactness at the extremes


def test_extreme_valid_models_run_exactly_on_numba():
    """Guards against accumulators and shifts narrower than the values a model may hold: a bias
    cast to int16, a rounding shift as wide as the register (both gave silent wrong pixels)."""
    rng = np.random.default_rng(26)
    img = np.concatenate([rng.integers(0, 256, (5, 6, 1)), np.zeros((5, 6, 1)),
                          np.full((5, 6, 1), 255)], axis=2).astype(np.uint8)
    cases = 0
    for r in (1, 2, 3, 4):
        for patterns in ("S", "SDY"):
            for interval in (4, 7):
                for variant in range(3):
                    stage = extreme_stage(rng, r, patterns, interval, with_base=variant == 1,
                                           with_taps=variant == 2)
                    lut = LUT((stage,), interval)
                    got = lutsr.upscale(img, lut, backend="numba", threads=1)
                    assert_images_equal(got, upscale_reference(img, lut),
                                        f"r={r} {patterns} k={interval} divisor={stage.divisor!r} "
                                        f"bias={stage.bias!r} base={stage.base is not None} "
                                        f"taps={stage.taps is not None}")
                    cases += 1
    assert cases == 48


@pytest.mark.parametrize("field, value", [
    ("bias", MAX_BIAS + 1), ("bias", -MAX_BIAS - 0.5), ("bias", 1e308), ("bias", float("nan")),
    ("divisor", DIVISOR_RANGE[1] * 2), ("divisor", DIVISOR_RANGE[0] / 2), ("divisor", 0),
    ("divisor", -1), ("divisor", float("inf")), ("bias", 10**400), ("bias", True),
])
def test_stage_refuses_values_outside_its_range(field, value):
    table = np.zeros((17**4, 1), np.int8)
    kwargs = {"divisor": 1.0, "bias": 0.0, field: value}
    with pytest.raises(ValueError, match=field):
        Stage(1, ("S",), (table,), **kwargs)


def test_scale_and_stage_count_are_bounded():
    table = np.zeros((65**4 // 65**4 * 3**4, 4), np.int8)  # interval 7: L = 3
    two = Stage(2, ("S",), (table,))
    with pytest.raises(ValueError, match=f"exceeds x{MAX_SCALE}"):
        LUT((two,) * 5, interval=7)
    one = Stage(1, ("S",), (np.zeros((81, 1), np.int8),))
    with pytest.raises(ValueError, match=f"1..{MAX_STAGES} stages"):
        LUT((one,) * (MAX_STAGES + 1), interval=7)
    assert LUT((two,) * 4, interval=7).scale == 16


# --------------------------------------------------------------------------- bounded reading


@pytest.fixture(scope="module")
def good_bytes():
    return to_bytes(random_lut(np.random.default_rng(5), interval=7, layout="mulut", scale=2))


def _bounded(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child limited to 1 GiB of address space beyond the interpreter (and
    the hang guard): an unbounded read fails the test instead of taking the machine down."""
    limit = """
import resource
limit = (1 << 30) + (1500 << 20)  # the interpreter with numpy maps about 1.5 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""
    return subprocess.run([sys.executable, "-c", limit + code], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)


def test_dev_zero_and_huge_files_are_refused_after_a_few_bytes(tmp_path):
    sparse = tmp_path / "sparse.lutsr"
    with open(sparse, "wb") as fh:
        fh.truncate(40 << 30)  # 40 GiB of holes: no disk used
    code = f"""
import lutsr
for path in ("/dev/zero", {str(sparse)!r}):
    try:
        lutsr.load(path)
    except lutsr.LUTFormatError as exc:
        print("refused:", exc)
"""
    done = _bounded(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused:") == 2 and "bad magic" in done.stdout


def test_a_header_that_declares_more_than_the_file_holds(tmp_path, good_bytes):
    header, tables = split_lut_bytes(good_bytes)
    header["stages"][0]["tables"][0]["shape"] = [129**4, 64]
    path = tmp_path / "big.lutsr"
    path.write_bytes(reseal_lut_bytes(header, tables))
    with pytest.raises(LUTFormatError, match="over the"):
        lutsr.load(path)
    header["stages"][0]["tables"][0]["shape"] = [3**4 + 1, 1]
    path.write_bytes(reseal_lut_bytes(header, tables))
    with pytest.raises(LUTFormatError, match="size disagrees"):
        lutsr.load(path)


def test_stream_input_is_read_only_as_far_as_declared(tmp_path, good_bytes):
    # A pipe has no size: the reader must stop at the declared end and notice extra bytes.
    fifo = tmp_path / "pipe.lutsr"
    import os
    import threading

    os.mkfifo(fifo)

    def feed(data):
        with open(fifo, "wb") as fh:
            fh.write(data)

    for data, ok in ((good_bytes, True), (good_bytes + b"x", False)):
        writer = threading.Thread(target=feed, args=(data,))
        writer.start()
        try:
            if ok:
                assert lutsr.load(fifo).scale == 2
            else:
                with pytest.raises(LUTFormatError, match="truncated"):
                    lutsr.load(fifo)
        finally:
            writer.join(timeout=10)


def _resealed_text(text: bytes) -> bytes:
    import hashlib
    import struct

    body = MAGIC + struct.pack("<I", len(text)) + text
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["stages"][0].update(bias=10**400), "out of range"),
    (lambda h: h["stages"][0].update(divisor=-(10**400)), "out of range"),
    (lambda h: h["stages"][0].update(bias=1e308), "bias must be in"),
    (lambda h: h["stages"][0]["tables"][0].update(shape=[True, True]), "bad shape"),
    (lambda h: h.update(scale=0), "scale"),
    (lambda h: h.update(scale=True), "scale"),
    (lambda h: h.update(interval=True), "interval"),
    (lambda h: h.update(format_version=True), "format_version"),
    (lambda h: h["stages"][0].update(kind="mystery"), "unknown kind"),
    (lambda h: h["stages"][0].update(kind="layered"), "format_version 4"),
    (lambda h: h.update(stages=h["stages"] * 32), "stages"),
])
def test_hostile_header_values_raise_lut_format_error(good_bytes, edit, message):
    with pytest.raises(LUTFormatError, match=message):
        from_bytes(with_header(good_bytes, edit))


def test_deep_nesting_and_huge_integers_in_the_header():
    with pytest.raises(LUTFormatError, match="nested too deeply"):
        from_bytes(_resealed_text(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    with pytest.raises(LUTFormatError, match="not valid JSON"):
        from_bytes(_resealed_text(b'{"format_version": ' + b"9" * 5000 + b"}"))


def test_sixty_four_x2_stages_cannot_wrap_the_scale(good_bytes):
    header, tables = split_lut_bytes(good_bytes)
    second = header["stages"][1]
    header["stages"] = [dict(second, tables=[dict(t) for t in second["tables"]])
                        for _ in range(64)]
    with pytest.raises(LUTFormatError, match="stages"):
        from_bytes(reseal_lut_bytes(header, tables))


# --------------------------------------------------------------------------- arrays


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_ndarray_subclasses_are_refused_by_name():
    lut = random_lut(np.random.default_rng(6), interval=7, scale=2)
    with pytest.raises(TypeError, match="matrix.*np.asarray"):
        lutsr.upscale(np.matrix(np.zeros((4, 4), np.uint8)), lut)
    with pytest.raises(TypeError, match="MaskedArray"):
        lutsr.upscale(np.ma.masked_array(np.zeros((4, 4), np.uint8)), lut)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        lutsr.upscale(np.zeros((4, 4), np.uint8), lut,
                      out=np.matrix(np.zeros((8, 8), np.uint8)))


# --------------------------------------------------------------------------- command line


@pytest.fixture
def sample_png(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "in.png"
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(path)
    return path


def _one_line_error(capsys, *args) -> str:
    """Run the CLI; assert it failed with exactly one ``lutsr: error:`` line and no traceback."""
    status = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert status == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lutsr: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_cli_cuda_without_a_gpu_is_one_line(capsys, tmp_path, sample_png):
    assert "GPU" in _one_line_error(capsys, "image", sample_png, "-o", tmp_path / "o.png",
                                    "--backend", "cuda")
    assert "GPU" in _one_line_error(capsys, "demo", "-o", tmp_path / "d.png", "--backend", "cuda")


def test_cli_video_errors_are_one_line(capsys, tmp_path):
    av = pytest.importorskip("av")
    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    line = _one_line_error(capsys, "video", src, "-o", tmp_path / "o.mp4", "--preset", "bogus")
    assert "preset 'bogus'" in line and "veryslow" in line
    assert "GPU" in _one_line_error(capsys, "video", src, "-o", tmp_path / "o.mp4",
                                    "--backend", "cuda")
    assert not (tmp_path / "o.mp4").exists()


def test_cli_oversized_model_and_dangling_output(capsys, tmp_path, sample_png, good_bytes):
    header, tables = split_lut_bytes(good_bytes)
    header["stages"] = header["stages"][1:] * 24  # x2**24 = x16777216
    header["scale"] = 2**24
    huge = tmp_path / "huge.lutsr"
    huge.write_bytes(reseal_lut_bytes(header, tables * 24))
    assert "stages" in _one_line_error(capsys, "info", huge)
    assert "huge.lutsr" in _one_line_error(capsys, "image", sample_png, "-o", tmp_path / "o.png",
                                           "--lut", huge)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "missing" / "target.png")
    line = _one_line_error(capsys, "image", sample_png, "-o", dangling)
    assert "exists" in line and "appeared" not in line


def test_cli_internal_errors_are_one_line_unless_debugging(capsys, monkeypatch, tmp_path):
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr("lutsr.cli.cmd_list", broken)
    line = _one_line_error(capsys, "list")
    assert "KeyError" in line and "--debug" in line
    assert main(["--debug", "list"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("LUTSR_DEBUG", "1")
    assert main(["list"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_cli_out_of_memory_is_one_line_per_image(capsys, monkeypatch, tmp_path, sample_png):
    def no_memory(self, img, out=None):
        raise MemoryError

    monkeypatch.setattr(lutsr.Upscaler, "up", no_memory)
    line = _one_line_error(capsys, "image", sample_png, "-o", tmp_path / "o.png")
    assert "out of memory" in line and "in.png" in line
    assert not (tmp_path / "o.png").exists()
    line = _one_line_error(capsys, "demo", "-o", tmp_path / "d.png")
    assert "out of memory" in line


def test_info_escapes_control_characters(capsys, tmp_path):
    lut = random_lut(np.random.default_rng(7), interval=7, scale=2)
    path = lutsr.save(LUT(lut.stages, lut.interval, "evil\x1b[2J\nname\u202e", {"k": "\x07"}),
                      tmp_path / "evil.lutsr")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b[2J\\nname\\u202e" in out
    assert json.loads(out[out.index("{"):])["k"] == "\x07"


def test_convert_refuses_bad_sources(capsys, tmp_path):
    line = _one_line_error(capsys, "convert", "srlut", tmp_path / "missing.npy", "-o",
                           tmp_path / "m.lutsr")
    assert "missing.npy" in line
    assert not Path(tmp_path / "m.lutsr").exists()


@pytest.mark.parametrize("module, owner, name", [
    ("lutsr._cpu.kernels", "lutsr.model", "TAP_BITS"),
    ("lutsr._cpu.layered", "lutsr.layered", "MAX_SHIFT"),
    ("lutsr._cuda.simplex", "lutsr.model", "BASE_BITS"),
    ("lutsr._cuda.layered", "lutsr.layered", "MAX_CHANNELS"),
])
def test_kernel_files_refuse_a_changed_model_constant(module, owner, name):
    # numba's on-disk cache keys on a kernel's own file: a constant it reads from
    # another module is a literal there, and a change on one side alone must fail
    # the import rather than run kernels compiled with the old value.
    code = (f"import importlib; m = importlib.import_module({owner!r}); "
            f"setattr(m, {name!r}, getattr(m, {name!r}) + 1); import {module}")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert proc.returncode != 0 and "ImportError" in proc.stderr and name in proc.stderr
