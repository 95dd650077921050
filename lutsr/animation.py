"""Animated images (GIF, WebP, APNG) in and out, frame by frame.

:func:`read_animation` gives every frame as it is displayed: Pillow composites
each frame over the ones before it with their disposal and blend applied
(GIF's partial frames and transparent "unchanged" pixels, APNG's regions, the
WebP animation decoder's canvas), so each frame can be upscaled on its own.
:func:`write_animation` writes full frames back with each one's duration and
the loop count; Pillow's writers store only the region that changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .imageio import ImageError, ImageInfo, _pil, gif_frame

#: Output formats written as animations: GIF, animated WebP and APNG (``.png``).
ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})


@dataclass
class Animation:
    """The frames of an animated image and their timing.

    Attributes
    ----------
    frames : list of ndarray of uint8
        Every frame as displayed, all of one shape: ``(H, W, 3)`` RGB, or
        ``(H, W, 4)`` RGBA when any frame has a pixel that is not opaque.
    durations : list of int
        How long each frame shows, in milliseconds.
    loop : int or None
        Pillow's loop count of the file: 0 loops forever; None when the file
        has none (a GIF without a loop extension plays once).
    """

    frames: list
    durations: list
    loop: int | None


def read_animation(path: str | os.PathLike) -> tuple[Animation, ImageInfo]:
    """Read every frame of an animated GIF, WebP or PNG (APNG), as displayed.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    animation : Animation
    info : ImageInfo
        The format and the ICC profile of the file (EXIF orientation is not
        applied to animations).

    Raises
    ------
    ImageError
        Not an image, or damaged.
    """
    Image, _ = _pil()
    frames, durations = [], []
    try:
        with Image.open(path) as im:
            info = ImageInfo(mode=im.mode, format=im.format or "",
                             icc_profile=im.info.get("icc_profile"))
            loop = im.info.get("loop")
            for index in range(getattr(im, "n_frames", 1)):
                im.seek(index)
                # GIF's first frame is a palette image, the later ones RGB(A): one layout
                frames.append(np.asarray(im.convert("RGBA")))
                durations.append(int(round(im.info.get("duration", 0) or 0)))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: cannot read image: {exc}") from exc
    if all(f[..., 3].min() == 255 for f in frames):
        frames = [np.ascontiguousarray(f[..., :3]) for f in frames]
    if info.icc_profile and frames[0].shape[2] not in (3, 4):
        info.icc_profile = None
    return Animation(frames, durations, loop), info


def write_animation(file, animation: Animation, format: str, *,
                    icc_profile: bytes | None = None, quality: int = 95) -> None:
    """Write an animation as GIF, animated WebP or APNG.

    Parameters
    ----------
    file : path or binary file object
    animation : Animation
        Frames of uint8 ``(H, W, 3)`` or ``(H, W, 4)``, all of one shape.
    format : {"GIF", "WEBP", "PNG"}
        GIF frames are palette-quantised by Pillow
        (:func:`lutsr.imageio.gif_frame`: 255 colours and a transparent one
        where alpha is below 128, each frame its own palette, disposed to the
        background when there is transparency); WebP is lossy at ``quality``;
        PNG is an APNG, lossless.
    icc_profile : bytes, optional
        Embedded in WebP and APNG.
    quality : int
        1..100, for WebP.

    Raises
    ------
    ImageError
        A format that is not animated, or frames of different shapes.
    """
    Image, _ = _pil()
    if format not in ANIMATED_FORMATS:
        raise ImageError(f"{format} is not written as an animation; write GIF, WebP or PNG")
    if len({f.shape for f in animation.frames}) != 1:
        raise ImageError("the frames of an animation must all have one shape")
    alpha = animation.frames[0].shape[2] == 4
    options: dict = {"save_all": True, "duration": list(animation.durations)}
    if format == "GIF":
        images = [gif_frame(frame)[0] for frame in animation.frames]
        if alpha:  # gif_frame's transparent index; cleared to it, not to the last frame
            options.update(transparency=255, disposal=2)
        if animation.loop is not None:
            options["loop"] = animation.loop
    else:
        images = [Image.fromarray(f) for f in animation.frames]
        # APNG and WebP have no "no loop" value: a GIF that plays once plays once
        options["loop"] = 1 if animation.loop is None else animation.loop
        if icc_profile:
            options["icc_profile"] = icc_profile
        if format == "WEBP":
            options["quality"] = quality
        else:  # each full frame replaces the last (blend "source", dispose "none")
            options.update(disposal=0, blend=0)
    try:
        images[0].save(file, format=format, append_images=images[1:], **options)
    except (OSError, KeyError, ValueError) as exc:
        raise ImageError(f"cannot write an animation as {format}: {exc}") from exc
