"""Uploaded images (user avatars, workspace profile images): checked, cleaned and stored.

An upload is decoded with Pillow, never trusted by its name or declared type:
- JPEG, PNG and WebP are accepted; another image format is a 415, anything Pillow cannot
  decode (not an image, truncated, corrupt) a 422;
- a decompression bomb (more than MAX_PIXELS pixels, or a file Pillow itself flags) is a
  422 before its pixels are decoded;
- the image is turned upright (EXIF orientation), bounded to MAX_SIDE pixels a side and
  re-encoded from its pixels alone, so no metadata (EXIF, GPS, ICC, text chunks) survives;
- it is stored under a content-addressed key, `<kind>/<owner id>/<sha256 of the bytes>.<ext>`:
  the same image uploaded again is the same object, and two owners never share one, so
  deleting an owner's object never touches anyone else's.

Storage is a local directory (MEDIA_ROOT, served under /media/ by backend/web.py) unless
MEDIA_S3_BUCKET names a bucket of an S3-compatible object store (reached through boto3).
The stored URL is what the API returns; `delete_url` removes the object behind a URL this
storage issued for that owner and leaves any other URL alone.
"""

import hashlib
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app, has_request_context, request
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.errors import AppError, ValidationFailed
from backend.extensions import db

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_SIDE = 1024
# Far above any real photo a profile needs (a 50 MP camera frame), far below what would
# exhaust memory when decoded (4 bytes a pixel).
MAX_PIXELS = 50_000_000
# Body limit of the upload routes: the file and the multipart framing around it.
UPLOAD_BODY_LIMIT = MAX_IMAGE_BYTES + 64 * 1024
MEDIA_URL_PATH = "/media"
UPLOAD_DESCRIPTION = "A JPEG, PNG or WebP image of at most 5 MB."
CACHE_CONTROL = "public, max-age=31536000, immutable"

# Pillow format -> (content type, file extension, encoder options)
FORMATS: dict[str, tuple[str, str, dict[str, int | bool]]] = {
    "JPEG": ("image/jpeg", "jpg", {"quality": 88, "optimize": True}),
    "PNG": ("image/png", "png", {"optimize": True}),
    "WEBP": ("image/webp", "webp", {"quality": 88}),
}
CONTENT_TYPES = {ext: content_type for content_type, ext, _options in FORMATS.values()}


class ImageRejected(AppError):
    status_code = 422


class UnsupportedImageType(AppError):
    status_code = 415


class ImageTooLarge(AppError):
    status_code = 413


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    extension: str


def read_upload(stream) -> bytes:
    """The uploaded file's bytes; 413 past MAX_IMAGE_BYTES (read no further than that)."""
    data = stream.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"The image is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
    if not data:
        raise ImageRejected("The file is empty.")
    return data


def clean_image(data: bytes) -> CleanImage:
    """Decodes, checks and re-encodes an uploaded image (see the module's docstring)."""
    with warnings.catch_warnings():
        # Pillow warns (then raises) on very large images: a warning is a refusal here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in FORMATS:
                    raise UnsupportedImageType(
                        f"Unsupported image type {image.format}: upload a JPEG, PNG or WebP image."
                    )
                width, height = image.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    raise ImageRejected("The image has too many pixels (a decompression bomb?).")
                image.load()
                content_type, extension, options = FORMATS[image.format]
                pixels = _bounded_pixels(image, image.format)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected("The image has too many pixels (a decompression bomb?).") from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected("The file is not a JPEG, PNG or WebP image.") from exc
        except AppError:
            raise
        except Exception as exc:
            # Truncated or corrupt data: Pillow's decoders raise OSError, SyntaxError,
            # ValueError, struct.error, EOFError... whatever the bytes lead them into.
            raise ImageRejected("The image could not be decoded.") from exc
    out = io.BytesIO()
    pixels.save(out, format=_format_of(extension), **options)
    return CleanImage(out.getvalue(), content_type, extension)


def _format_of(extension: str) -> str:
    return next(name for name, (_type, ext, _options) in FORMATS.items() if ext == extension)


def _bounded_pixels(image: Image.Image, image_format: str) -> Image.Image:
    """Upright, at most MAX_SIDE a side, in a mode the format can write, as a new image
    holding pixels only (nothing of the original's metadata)."""
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    if image_format == "JPEG" or not has_alpha:
        mode = "L" if upright.mode in ("1", "L", "I;16", "I") and image_format != "WEBP" else "RGB"
    else:
        mode = "RGBA"
    converted = upright.convert(mode)
    converted.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return Image.frombytes(converted.mode, converted.size, converted.tobytes())


# --- storage -------------------------------------------------------------------------


class LocalStorage:
    """Files under `root`, served by the app at MEDIA_URL_PATH (backend/web.py)."""

    def __init__(self, root: str, public_base_url: str | None):
        self.root = Path(root)
        self.public_base_url = public_base_url

    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        root = request.url_root.rstrip("/") if has_request_context() else ""
        return root + MEDIA_URL_PATH

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def key_of(self, url: str) -> str | None:
        if self.public_base_url:
            return _after_prefix(url, self.public_base_url.rstrip("/") + "/")
        # Issued with the host of the request that uploaded it: the path says it is ours.
        return _after_prefix(urlsplit(url).path, MEDIA_URL_PATH + "/")

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3Storage:
    """Objects in a bucket of an S3-compatible store (AWS S3, MinIO, R2, ...)."""

    def __init__(self, bucket, endpoint_url, access_key, secret_key, region, public_base_url):
        import boto3  # only deployments that use S3 pay for importing it

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.public_base_url = public_base_url
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
        )

    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{self.bucket}"
        return f"https://{self.bucket}.s3.{self.region or 'us-east-1'}.amazonaws.com"

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, CacheControl=CACHE_CONTROL
        )

    def key_of(self, url: str) -> str | None:
        return _after_prefix(url, self.base_url() + "/")

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def _after_prefix(value: str, prefix: str) -> str | None:
    """The key after `prefix`, if it has the shape of a key we write (<kind>/<owner>/<file>)."""
    if not value.startswith(prefix):
        return None
    key = value[len(prefix) :]
    parts = key.split("/")
    if len(parts) != 3 or any(part in ("", ".", "..") for part in parts) or "\\" in key:
        return None
    return key


@lru_cache(maxsize=8)
def _s3_storage(*settings) -> S3Storage:
    return S3Storage(*settings)


def storage() -> LocalStorage | S3Storage:
    config = current_app.config
    if config.get("MEDIA_S3_BUCKET"):
        return _s3_storage(
            config["MEDIA_S3_BUCKET"],
            config.get("MEDIA_S3_ENDPOINT_URL"),
            config.get("MEDIA_S3_ACCESS_KEY_ID"),
            config.get("MEDIA_S3_SECRET_ACCESS_KEY"),
            config.get("MEDIA_S3_REGION"),
            config.get("MEDIA_S3_PUBLIC_BASE_URL"),
        )
    return LocalStorage(config["MEDIA_ROOT"], config.get("MEDIA_PUBLIC_BASE_URL"))


def store_upload(kind: str, owner_id, upload, field: str) -> str:
    """Reads, cleans and stores an uploaded file (a werkzeug FileStorage) and returns its
    public URL. A refused image is a 422 naming `field` (415 / 413 as described above)."""
    try:
        image = clean_image(read_upload(upload.stream))
    except ImageRejected as exc:
        raise ValidationFailed({field: [exc.detail]}, detail=exc.detail) from exc
    digest = hashlib.sha256(image.data).hexdigest()
    key = f"{kind}/{owner_id}/{digest}.{image.extension}"
    target = storage()
    target.put(key, image.data, image.content_type)
    return f"{target.base_url()}/{key}"


def replace_image(row, attribute: str, kind: str, upload, field: str):
    """Stores an uploaded image as `row.<attribute>` (a URL column), commits, then deletes
    the image it replaces. Returns the row."""
    url = store_upload(kind, row.id, upload, field)
    previous = getattr(row, attribute)
    setattr(row, attribute, url)
    db.session.commit()
    if previous != url:
        delete_url(previous, kind, row.id)
    return row


def key_of(url: str | None) -> str | None:
    """The storage key behind a URL this storage issued, else None (e.g. an external link)."""
    return storage().key_of(url) if url else None


def delete_url(url: str | None, kind: str, owner_id) -> None:
    """Removes the object behind `url` when this storage issued it for this owner (`kind`/
    `owner_id`: a link an owner typed that names someone else's object deletes nothing);
    failures are logged (the row that pointed at it is already gone or changed)."""
    key = key_of(url)
    if key is None or not key.startswith(f"{kind}/{owner_id}/"):
        return
    try:
        storage().delete(key)
    except Exception:  # a storage outage must not undo a committed change
        log.exception("could not delete media object %s", key)
