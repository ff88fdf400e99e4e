"""The body of `POST /api/videos/upload` as the benchmarks send it: multipart/form-data with
a title and then the file, built around the file's bytes (never re-encoded)."""

from __future__ import annotations


def envelope(title: str, filename: str, boundary: str) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes: the `title` field and the head of the
    `video_file` part, then the closing boundary."""
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="title"\r\n\r\n'
        f"{title}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="video_file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    )
    return head.encode(), f"\r\n--{boundary}--\r\n".encode()


def content_type(boundary: str) -> str:
    return f"multipart/form-data; boundary={boundary}"
