"""The worker benchmark's inputs: a content-diverse set of phone-like clips, generated with
ffmpeg (and one photograph that matplotlib ships), cached on disk.

Each clip stresses the encoder differently: a near-static tripod shot, normal handheld
motion, fast motion, heavy sensor grain, a portrait phone clip, a real photograph (a slow
tilt), and a clean synthetic card. All but the card are built from one texture (multi-scale
value noise: soft colour blobs with fine detail, like foliage or gravel) and encoded the way a
phone does (H.264 High, 1 s GOP, no B-frames, capped VBR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.media import MB, PHONE_LIKE, cached, encode_noisy_card, ffmpeg

SECONDS = 30  # the pipeline keeps at most 30 s of footage
FPS = 30
RECIPE = "v3"  # bump when the generated files change, so --keep caches are not reused
PHONE_BITRATE = 12 * MB  # about what a phone records 1080p30 at (capped VBR)
TEXTURE_WIDTH, TEXTURE_HEIGHT = 2560, 1440


@dataclass(frozen=True)
class Clip:
    """One input of the set: its name, what it stands for, and how it is made."""

    name: str
    about: str
    make: Callable[[Path, Path], None]  # (work dir, target)

    def path(self, work: Path) -> Path:
        target = work / f"clip-{self.name}-{RECIPE}.mp4"
        return cached(target, lambda partial: self.make(work, partial))


def texture_graph() -> str:
    """A 2560x1440 still of multi-scale value noise: soft colour blobs with fine luma detail."""

    def octave(size: str, luma: int, chroma: int) -> str:
        return (
            f"color=c=0x808080:s={size}:d=1:r=1,format=yuv444p,"
            f"noise=c0s={luma}:c1s={chroma}:c2s={chroma}:allf=u,"
            f"scale={TEXTURE_WIDTH}:{TEXTURE_HEIGHT}:flags=bicubic,setsar=1"
        )

    return ";".join(
        [
            f"{octave('24x14', 100, 100)}[o1]",
            f"{octave('96x54', 100, 60)}[o2]",
            f"{octave('384x216', 90, 0)}[o3]",
            f"{octave('1280x720', 80, 0)}[o4]",
            f"{octave('2560x1440', 60, 0)}[o5]",
            "[o1][o2]blend=all_mode=average[coarse]",
            "[o3][o4]blend=all_mode=average[fine]",
            "[fine][o5]blend=all_expr='A*0.8+B*0.2'[finer]",
            "[coarse][finer]blend=all_expr='A*0.6+B*0.4',"
            "eq=contrast=2.2:saturation=1.3,format=yuv420p",
        ]
    )


def texture(work: Path) -> Path:
    return cached(
        work / f"texture-{RECIPE}.png",
        lambda target: ffmpeg(
            "-f", "lavfi", "-i", texture_graph(), "-frames:v", "1", "-f", "image2", str(target)
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class Motion:
    """A camera path over the texture (pixels, periods in seconds) and what moves on it."""

    pan: tuple[int, float, int, float]  # x amplitude, x period, y amplitude, y period
    shake: int  # handheld jitter amplitude
    card_period: float  # seconds per sweep of the moving test card; 0: no card
    grain: int  # temporal sensor noise strength


def scene_graph(motion: Motion, size: str = "1920:1080") -> str:
    """The texture seen through a moving camera of `size`, a test card moving on it, grain."""
    ax, px, ay, py = motion.pan
    width, height = (int(v) for v in size.split(":"))
    # the texture, enlarged where needed so that the camera never leaves it
    scale = max(
        1.0,
        (width + 2 * (ax + motion.shake) + 16) / TEXTURE_WIDTH,
        (height + 2 * (ay + motion.shake) + 16) / TEXTURE_HEIGHT,
    )
    tw, th = 2 * round(TEXTURE_WIDTH * scale / 2), 2 * round(TEXTURE_HEIGHT * scale / 2)
    cx, cy = (tw - width) // 2, (th - height) // 2
    frames = SECONDS * FPS
    camera = (
        f"crop={width}:{height}"
        f":x='{cx}+{ax}*sin(2*PI*t/{px})+{motion.shake}*sin(2*PI*t/1.3)'"
        f":y='{cy}+{ay}*sin(2*PI*t/{py})+{motion.shake}*sin(2*PI*t/1.7)'"
    )
    still = f"scale={tw}:{th}:flags=bicubic,loop=loop={frames - 1}:size=1,setpts=N/{FPS}/TB"
    parts = [f"[0:v]{still},{camera}[background]"]
    if motion.card_period:
        period = motion.card_period
        parts += [
            f"testsrc2=s={width * 2 // 5}x{height * 2 // 5}:r={FPS}:d={SECONDS}[card]",
            f"[background][card]overlay=x='(W-w)/2+(W-w)/2*sin(2*PI*t/{period})'"
            f":y='(H-h)/2+(H-h)/2*sin(2*PI*t/{period * 0.45:g})'[scene]",
        ]
    else:
        parts[-1] = parts[-1].replace("[background]", "[scene]")
    parts.append(f"[scene]noise=alls={motion.grain}:allf=t,setsar=1,format=yuv420p")
    return ";".join(parts)


def phone_encode(inputs: list[str], graph: str, target: Path) -> None:
    """Encode `graph` over `inputs` as a phone does, at PHONE_BITRATE (four slice threads
    rather than frame threads, whose rate control is not reproducible)."""
    ffmpeg(
        *inputs, "-filter_complex", graph, "-t", str(SECONDS),
        "-c:v", "libx264", "-preset", "faster", "-profile:v", "high",
        "-b:v", str(PHONE_BITRATE), "-maxrate", str(PHONE_BITRATE * 3 // 2),
        "-bufsize", str(PHONE_BITRATE * 2), "-g", str(FPS), "-bf", "0",
        "-x264-params", "threads=4:sliced-threads=1",
        "-movflags", "+faststart", "-f", "mp4", str(target),
    )  # fmt: skip


def textured(motion: Motion, size: str = "1920:1080") -> Callable[[Path, Path], None]:
    def make(work: Path, target: Path) -> None:
        inputs = ["-framerate", str(FPS), "-i", str(texture(work))]
        phone_encode(inputs, scene_graph(motion, size), target)

    return make


def photograph(work: Path, target: Path) -> None:
    """A real photograph (matplotlib's sample `grace_hopper.jpg`, 512x600) filmed with a slow
    tilt from top to bottom, with light grain."""
    try:
        from matplotlib import cbook
    except ImportError:
        raise SystemExit("the photograph clip needs matplotlib: pip install -e '.[load]'") from None
    photo = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    frames = SECONDS * FPS
    graph = (
        f"[0:v]scale=1920:-2:flags=lanczos,loop=loop={frames - 1}:size=1,setpts=N/{FPS}/TB,"
        f"crop=1920:1080:x=0:y='(ih-oh)*t/{SECONDS}',"  # 1920x2250: 1 170 rows to tilt over
        "noise=alls=3:allf=t,setsar=1,format=yuv420p"
    )
    phone_encode(["-framerate", str(FPS), "-i", str(photo)], graph, target)


def card(work: Path, target: Path) -> None:
    """60 s of 1080p testsrc2 with light grain at 6.5 Mb/s: a clean input none of the
    pipeline's settings were tuned on."""
    encode_noisy_card(target, 6_500_000, 60, FPS, PHONE_LIKE)


CLIPS = (
    Clip("static", "tripod: texture, faint drift, light grain",
         textured(Motion((6, 20.0, 4, 25.0), 1, 0, 3))),
    Clip("motion", "handheld pan, a test card crossing",
         textured(Motion((250, 7.0, 130, 9.0), 40, 11.0, 4))),
    Clip("fast", "fast pans and a fast card: high motion",
         textured(Motion((500, 1.6, 300, 2.3), 60, 1.5, 4))),
    Clip("grain", "handheld pan in low light: heavy grain",
         textured(Motion((250, 7.0, 130, 9.0), 40, 11.0, 22))),
    Clip("portrait", "1080x1920 phone held upright, handheld",
         textured(Motion((350, 8.0, 150, 6.0), 30, 9.0, 5), size="1080:1920")),
    Clip("photo", "a real photograph, slow tilt", photograph),
    Clip("card", "testsrc2, light grain, 6.5 Mb/s (60 s)", card),
)  # fmt: skip
"""The set, in the order the report lists it."""


def by_names(names: list[str] | None) -> list[Clip]:
    """The clips named (all when None), in the set's order; an unknown name raises."""
    if not names:
        return list(CLIPS)
    known = {clip.name for clip in CLIPS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown clips {unknown}; known: {sorted(known)}")
    return [clip for clip in CLIPS if clip.name in names]
