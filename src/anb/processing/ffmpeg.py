"""Where the ffmpeg binary comes from: `ANB_FFMPEG`, else the one imageio-ffmpeg ships."""

from __future__ import annotations

from anb.core.settings import get_settings


def ffmpeg_exe() -> str:
    configured = get_settings().ffmpeg
    if configured:
        return configured
    import imageio_ffmpeg  # deferred: it looks the binary up on disk

    shipped: str = imageio_ffmpeg.get_ffmpeg_exe()  # the path of its binary (untyped there)
    return shipped
