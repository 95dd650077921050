"""A video run's options (:class:`VideoOptions`) and what it did (:class:`VideoReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoOptions:
    """How :func:`lutsr.video.upscale_video` upscales, encodes and reports.

    Every field's default is what a run does when not told otherwise; change
    a few with ``VideoOptions(crf=20, luma_only=True)`` or
    ``dataclasses.replace(options, overwrite=True)``.

    Parameters
    ----------
    backend, threads
        Passed to :class:`lutsr.Upscaler` when the run builds one.
    luma_only : bool
        LUT on the luma plane only, bicubic chroma (see :mod:`lutsr.video`).
    codec : str, optional
        FFmpeg encoder name (``libx264``, ``libx265``, ``libvpx-vp9``, ``mpeg4``,
        ``h264_nvenc``...) or a common name (``h265``, ``av1``: see
        :data:`lutsr.video.encoding.CODEC_ALIASES`);
        default :data:`lutsr.video.encoding.DEFAULT_CODECS` for the muxer, else
        ``libx264``.
    crf : float, optional
        Constant-quality factor, for encoders that have one (default
        :data:`lutsr.video.encoding.DEFAULT_CRF` unless ``bitrate`` is given).
    bitrate : str or int, optional
        Target bitrate such as ``"8M"``; exclusive with ``crf``.
    pix_fmt : str, optional
        Encoded pixel format. Default: the input's YUV layout when the
        encoder supports it (so ``yuv444p`` stays 4:4:4 and
        ``yuv420p10le`` stays 10-bit), else ``yuv420p`` (``yuv420p10le`` for
        an input deeper than 8 bits, when the encoder takes it).
    preset : str, optional
        Encoder speed preset (default :data:`lutsr.video.encoding.DEFAULT_PRESETS`).
    audio, subtitles : bool
        Copy the audio / subtitle streams (all of them).
    allow_8bit : bool
        Accept writing fewer bits per sample than the input has (a 10-bit
        input with an 8-bit-only encoder or ``pix_fmt``); refused otherwise.
    overwrite : bool
        Replace an existing output file.
    progress : bool
        Show a progress bar on stderr.
    outscale : float, optional
        Output factor > 0 (e.g. 3 or 1.5): each side ``round(outscale *
        side)``, made even where the pixel format needs it (see
        :func:`lutsr.video.encoding.subsampled_size`). The LUT's upscale is
        resized by :func:`lutsr.video.frames.resize_frame`.
    size : (int, int), optional
        Output ``(width, height)`` as displayed (a clip turned a quarter turn
        by its display matrix is stored ``height x width``); exclusive with
        ``outscale``. One side may be -1 (from the other, keeping the aspect
        ratio) or -2 (the same, rounded to even): see
        :func:`lutsr.outsize.output_size`.
    box : (int, int), optional
        A target box ``(width, height)``, as displayed, that ``box_mode``
        fits the video to (:func:`lutsr.outsize.box_geometry`); exclusive
        with ``size`` and ``outscale``.
    box_mode : str
        ``"fit"`` (inside the box, aspect kept: the output may be smaller on
        one side), ``"pad"`` (that, padded to the box with ``pad_colour``) or
        ``"crop"`` (covering the box, its centre kept).
    pad_colour : (int, int, int)
        The ``"pad"`` bars' colour, 8-bit RGB (default black).
    colorspace : str
        ``"auto"``: an input in BT.601 (tagged, or untagged SD) written HD
        (:func:`lutsr.video.colour.is_hd`) is converted to BT.709 and tagged
        so; ``"bt709"``: always; ``"keep"``: never (the input's matrix, as
        before). See :func:`lutsr.video.colour.output_colorspace`.
    encoder_options : dict of str to str
        FFmpeg encoder options (``{"tune": "film", "x264-params":
        "keyint=50"}``), applied last; a key the encoder lacks is refused
        (:func:`lutsr.video.encoding.check_encoder_options`).
    format : str, optional
        Output format name from :data:`lutsr.video.encoding.PIPE_FORMATS`
        (``"y4m"``...); needed when the output is ``"-"``, else its suffix
        decides.
    input_size : (int, int), optional
        Read the input as raw frames of this ``(width, height)`` (no header,
        e.g. ``ffmpeg -f rawvideo -``), in ``input_pix_fmt`` at ``input_rate``
        frames per second (a number or a ratio such as ``"30000/1001"``).
    input_pix_fmt : str
    input_rate : str or float
    quiet : bool
        Silence the encoders' own log lines (FFmpeg's log level is raised to
        errors for the run, then restored; x265 is told the same) and
        lutsr's notes (``lutsr: note: ...`` on stderr; they are in the
        report's ``notes`` either way).
    alpha : bool
        Keep the input's alpha channel, if it has one (see
        :mod:`lutsr.video`): in ``pix_fmt`` when it has alpha, else in the
        closest format with alpha the encoder takes
        (:func:`lutsr.video.encoding.alpha_pix_fmt`); refused when there is
        none. False drops it (the colour stored under transparent pixels then
        shows).
    straight_alpha : bool
        Upscale alpha videos channel by channel as stored instead of
        premultiplied; required with ``luma_only`` for an alpha kept.
    """

    backend: str = "auto"
    threads: int | None = None
    luma_only: bool = False
    codec: str | None = None
    crf: float | None = None
    bitrate: str | int | None = None
    pix_fmt: str | None = None
    preset: str | None = None
    audio: bool = True
    subtitles: bool = True
    allow_8bit: bool = False
    overwrite: bool = False
    progress: bool = False
    outscale: float | None = None
    size: tuple[int, int] | None = None
    format: str | None = None
    input_size: tuple[int, int] | None = None
    input_pix_fmt: str = "yuv420p"
    input_rate: str | float = 25
    quiet: bool = False
    alpha: bool = True
    straight_alpha: bool = False
    box: tuple[int, int] | None = None
    box_mode: str = "fit"
    pad_colour: tuple[int, int, int] = (0, 0, 0)
    colorspace: str = "auto"
    encoder_options: dict[str, str] = field(default_factory=dict)


@dataclass
class VideoReport:
    """What :func:`lutsr.video.upscale_video` did.

    Attributes
    ----------
    frames : int
        Frames encoded.
    seconds : float
        Wall time from opening the input to closing the output.
    input_size, output_size : tuple of int
        ``(width, height)`` of the decoded and encoded frames.
    copied_streams : list of str
        The audio and subtitle streams copied, e.g. ``["audio:aac", "subtitle:mov_text"]``.
    luma_only : bool
    turned : bool
        The video is displayed turned a quarter turn: its displayed sizes are
        the sizes above, height by width.
    notes : list of str
        What the run did that was not asked and said on stderr (an odd size
        made even for 4:2:0, a variable frame rate written constant in y4m).
    """

    frames: int
    seconds: float
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    copied_streams: list[str] = field(default_factory=list)
    luma_only: bool = False
    turned: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second, end to end."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")
