"""Image uploads: POST /users/me/avatar and POST /workspaces/{id}/profile-image, with real
images made by Pillow, stored in a local directory (served under /media/) or in an
S3-compatible bucket of a moto server process the tests start, reached through boto3."""

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from PIL import Image, PngImagePlugin

from backend.extensions import db
from backend.models import User, Workspace
from backend.services.media import MAX_IMAGE_BYTES, MAX_SIDE
from tests.factories import auth_headers, make_user, make_workspace
from tests.helpers import free_port

AVATAR = "/api/v1/users/me/avatar"
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def image_bytes(fmt: str, size=(1600, 1200), mode="RGB", **save) -> bytes:
    image = Image.new(mode, size, (200, 30, 90) if mode == "RGB" else None)
    out = io.BytesIO()
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x010F] = "SpyCam"  # Make
        exif[0x0112] = 6  # Orientation: rotated 90 degrees
        exif[0x8825] = {2: (40.0, 26.0, 46.0)}  # GPSInfo: GPSLatitude
        save.setdefault("exif", exif.tobytes())
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "secret location")
        save.setdefault("pnginfo", info)
    image.save(out, format=fmt, **save)
    return out.getvalue()


def upload(client, user, data: bytes, field="avatar", filename="me.png", url=AVATAR, content_type=None):
    files = {field: (io.BytesIO(data), filename, content_type or "application/octet-stream")}
    return client.post(url, data=files, headers=auth_headers(user), content_type="multipart/form-data")


def fetch(client, url: str):
    """An image URL of local storage, fetched from the app."""
    return client.get(urlsplit(url).path)


@pytest.fixture
def media_root(app, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "media"
    monkeypatch.setitem(app.config, "MEDIA_ROOT", str(root))
    monkeypatch.setitem(app.config, "MEDIA_S3_BUCKET", None)
    monkeypatch.setitem(app.config, "MEDIA_PUBLIC_BASE_URL", None)
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_avatar_of_each_type_is_cleaned_bounded_and_served(client, media_root, fmt):
    user = make_user()
    response = upload(client, user, image_bytes(fmt), filename=f"photo.{fmt.lower()}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    url = body["avatar_url"]
    extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    assert url.startswith(f"http://localhost/media/users/{user.id}/") and url.endswith("." + extension)
    assert client.get("/api/v1/users/me", headers=auth_headers(user)).get_json()["avatar_url"] == url

    served = fetch(client, url)
    assert served.status_code == 200 and served.mimetype == FORMATS[fmt]
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=31536000" in served.headers["Cache-Control"]
    with Image.open(io.BytesIO(served.data)) as image:
        assert image.format == fmt and max(image.size) <= MAX_SIDE
        # Turned upright by its EXIF orientation (JPEG), then every piece of metadata dropped.
        assert image.size == ((768, 1024) if fmt == "JPEG" else (1024, 768))
        assert not image.getexif() and "exif" not in image.info
        assert "Comment" not in image.info and "icc_profile" not in image.info
    assert b"SpyCam" not in served.data and b"secret location" not in served.data
    [stored] = stored_files(media_root)
    assert stored.name == url.rsplit("/", 1)[1]


def test_transparency_is_kept_for_png_and_webp(client, media_root):
    user = make_user()
    for fmt in ("PNG", "WEBP"):
        response = upload(client, user, image_bytes(fmt, size=(40, 30), mode="RGBA"))
        with Image.open(io.BytesIO(fetch(client, response.get_json()["avatar_url"]).data)) as image:
            assert image.mode == "RGBA" and image.size == (40, 30)


def test_replacing_the_avatar_deletes_the_old_file_and_the_same_image_is_one_file(client, media_root):
    user = make_user()
    first = upload(client, user, image_bytes("PNG")).get_json()["avatar_url"]
    assert upload(client, user, image_bytes("PNG")).get_json()["avatar_url"] == first  # same content
    assert len(stored_files(media_root)) == 1
    second = upload(client, user, image_bytes("JPEG")).get_json()["avatar_url"]
    assert second != first
    assert [p.name for p in stored_files(media_root)] == [second.rsplit("/", 1)[1]]
    assert fetch(client, first).status_code == 404


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims width x height (the CRC is made to match)."""
    data = bytearray(image_bytes("PNG", size=(8, 8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _real_bomb() -> bytes:
    """12000 x 12000 pixels (144 megapixels) that compress to a few kilobytes."""
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "data,status",
    [
        (b"%PDF-1.7 not an image at all", 422),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 422),  # a PNG signature, then garbage
        (image_bytes("PNG")[:300], 422),  # truncated
        (_png_claiming(100_000, 100_000), 422),  # a header claiming 10 gigapixels
        (_real_bomb(), 422),
        (image_bytes("GIF", size=(10, 10), mode="L"), 415),
        (image_bytes("BMP", size=(10, 10)), 415),
        (b"", 422),
    ],
    ids=["pdf", "png-garbage", "truncated", "claimed-bomb", "real-bomb", "gif", "bmp", "empty"],
)
def test_what_is_not_an_acceptable_image_is_refused(client, media_root, data, status):
    user = make_user()
    response = upload(client, user, data)
    assert response.status_code == status, response.get_json()
    assert isinstance(response.get_json()["detail"], str)
    if status == 422:
        assert "avatar" in response.get_json()["errors"]
    assert stored_files(media_root) == []
    assert db.session.get(User, user.id).avatar_url is None


def test_over_5_mb_is_413_and_up_to_5_mb_is_read(client, media_root):
    user = make_user()
    big = os.urandom(MAX_IMAGE_BYTES + 1)
    response = upload(client, user, big)
    assert response.status_code == 413 and isinstance(response.get_json()["detail"], str)
    # A whole body far over the limit is refused before it is read.
    response = upload(client, user, os.urandom(MAX_IMAGE_BYTES + 200_000))
    assert response.status_code == 413
    # Exactly 5 MB of non-image is read and refused as such, not as too large.
    assert upload(client, user, os.urandom(MAX_IMAGE_BYTES)).status_code == 422
    # Other routes keep the 1 MiB limit.
    response = client.patch(
        "/api/v1/users/me", json={"bio": "x" * (2 * 1024 * 1024)}, headers=auth_headers(user)
    )
    assert response.status_code == 413


def test_upload_needs_a_token_and_the_file_part(client, media_root):
    response = client.post(AVATAR, data={"avatar": (io.BytesIO(image_bytes("PNG")), "a.png")})
    assert response.status_code == 401
    user = make_user()
    response = upload(client, user, image_bytes("PNG"), field="picture")
    assert response.status_code == 422 and "avatar" in response.get_json()["errors"]
    response = client.post(AVATAR, json={"avatar": "data:image/png;base64,AAAA"}, headers=auth_headers(user))
    assert response.status_code == 422


def test_workspace_profile_image_shows_on_the_public_profile_and_the_demo_page(client, media_root):
    workspace = make_workspace(public_name="Luz Yoga")
    url_path = f"/api/v1/workspaces/{workspace.id}/profile-image"
    response = upload(client, workspace.owner, image_bytes("WEBP"), field="image", url=url_path)
    assert response.status_code == 200
    image_url = response.get_json()["profile_image_url"]
    assert f"/media/workspaces/{workspace.id}/" in image_url

    profile = client.get(f"/api/v1/public/workspaces/{workspace.handle}").get_json()
    assert profile["profile_image_url"] == image_url
    page = client.get(f"/chat/{workspace.handle}")
    assert page.status_code == 200 and f'src="{image_url}"' in page.get_data(as_text=True)
    assert fetch(client, image_url).mimetype == "image/webp"

    stranger = make_user()
    response = upload(client, stranger, image_bytes("PNG"), field="image", url=url_path)
    assert response.status_code == 403 and response.get_json() == {"detail": "Not your workspace"}
    response = upload(
        client,
        workspace.owner,
        image_bytes("PNG"),
        field="image",
        url="/api/v1/workspaces/nope/profile-image",
    )
    assert response.status_code == 404

    # Replaced by a link through PATCH: the uploaded file goes.
    response = client.patch(
        f"/api/v1/workspaces/{workspace.id}",
        json={"profile_image_url": "https://cdn.example.com/luz.png"},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 200 and stored_files(media_root) == []


def test_deleting_a_workspace_or_a_user_deletes_their_images(client, media_root):
    workspace = make_workspace()
    owner = workspace.owner
    upload(
        client,
        owner,
        image_bytes("PNG"),
        field="image",
        url=f"/api/v1/workspaces/{workspace.id}/profile-image",
    )
    assert len(stored_files(media_root)) == 1
    assert client.delete(f"/api/v1/workspaces/{workspace.id}", headers=auth_headers(owner)).status_code == 200
    assert stored_files(media_root) == []

    workspace = make_workspace(owner)
    upload(
        client,
        owner,
        image_bytes("PNG"),
        field="image",
        url=f"/api/v1/workspaces/{workspace.id}/profile-image",
    )
    upload(client, owner, image_bytes("JPEG"))
    other = make_user()
    upload(client, other, image_bytes("JPEG"))  # the same image: another owner's own file
    assert len(stored_files(media_root)) == 3
    assert client.delete("/api/v1/users/me", headers=auth_headers(owner)).status_code == 200
    assert [p.parent.name for p in stored_files(media_root)] == [str(other.id)]


def test_media_route_serves_only_stored_images(client, media_root):
    assert client.get("/media/users/x/../../etc/passwd").status_code == 404
    assert client.get("/media/users/x/y.html").status_code == 404
    response = client.get("/media/users/x/missing.png")
    assert response.status_code == 404 and response.get_json() == {"detail": "File not found"}


# --- S3-compatible storage ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server():
    """moto's standalone S3-compatible server, as its own process."""
    port = free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3_bucket(app, s3_server, monkeypatch):
    settings = {
        "MEDIA_S3_BUCKET": "media-test",
        "MEDIA_S3_ENDPOINT_URL": s3_server,
        "MEDIA_S3_ACCESS_KEY_ID": "testing",
        "MEDIA_S3_SECRET_ACCESS_KEY": "testing",
        "MEDIA_S3_REGION": "us-east-1",
        "MEDIA_S3_PUBLIC_BASE_URL": None,
    }
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="media-test")
    # A public media bucket, as a deployment sets it up: anyone may read its objects.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::media-test/*",
            }
        ],
    }
    client.put_bucket_policy(Bucket="media-test", Policy=json.dumps(policy))
    yield client
    for item in client.list_objects_v2(Bucket="media-test").get("Contents", []):
        client.delete_object(Bucket="media-test", Key=item["Key"])
    client.delete_bucket(Bucket="media-test")


def _keys(s3) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket="media-test").get("Contents", []))


def test_s3_storage_stores_replaces_and_deletes(client, media_root, s3_bucket):
    workspace = make_workspace()
    owner, workspace_id = workspace.owner, workspace.id
    response = upload(client, owner, image_bytes("JPEG"))
    assert response.status_code == 200, response.get_json()
    url = response.get_json()["avatar_url"]
    [key] = _keys(s3_bucket)
    assert key.startswith(f"users/{owner.id}/") and key.endswith(".jpg")
    assert url == f"{s3_bucket.meta.endpoint_url}/media-test/{key}"
    stored = s3_bucket.get_object(Bucket="media-test", Key=key)
    assert stored["ContentType"] == "image/jpeg" and "immutable" in stored["CacheControl"]
    fetched = requests.get(url, timeout=5)  # the public URL answers with the image itself
    assert fetched.status_code == 200
    with Image.open(io.BytesIO(fetched.content)) as image:
        assert image.format == "JPEG" and max(image.size) <= MAX_SIDE and not image.getexif()
    assert stored_files(media_root) == []  # nothing written locally

    second = upload(client, owner, image_bytes("PNG")).get_json()["avatar_url"]
    assert _keys(s3_bucket) == [second.rsplit("/media-test/", 1)[1]]
    response = upload(
        client,
        owner,
        image_bytes("WEBP"),
        field="image",
        url=f"/api/v1/workspaces/{workspace.id}/profile-image",
    )
    assert response.status_code == 200 and len(_keys(s3_bucket)) == 2
    assert (
        client.get(f"/api/v1/public/workspaces/{workspace.handle}").get_json()["profile_image_url"]
        == (response.get_json()["profile_image_url"])
    )

    admin = make_user(is_superuser=True)
    assert client.delete(f"/api/v1/users/{owner.id}", headers=auth_headers(admin)).status_code == 200
    assert _keys(s3_bucket) == []
    assert db.session.get(Workspace, workspace_id) is None


def test_s3_public_base_url_is_used_for_the_stored_url(app, client, media_root, s3_bucket, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_S3_PUBLIC_BASE_URL", "https://cdn.example.com/assets/")
    user = make_user()
    url = upload(client, user, image_bytes("PNG")).get_json()["avatar_url"]
    [key] = _keys(s3_bucket)
    assert url == f"https://cdn.example.com/assets/{key}"
    upload(client, user, image_bytes("JPEG"))
    assert len(_keys(s3_bucket)) == 1  # the old object, found by its CDN URL, was deleted


def test_a_typed_link_to_someone_elses_image_deletes_nothing(client, media_root):
    victim = make_user()
    victim_url = upload(client, victim, image_bytes("PNG")).get_json()["avatar_url"]
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    # The same path as the victim's image, on a public host (a link to localhost is refused).
    for link in (victim_url.replace("http://localhost", "https://elsewhere.example"),):
        url = f"/api/v1/workspaces/{workspace.id}"
        assert client.patch(url, json={"profile_image_url": link}, headers=headers).status_code == 200
        assert client.patch(url, json={"profile_image_url": None}, headers=headers).status_code == 200
    assert client.delete(f"/api/v1/workspaces/{workspace.id}", headers=headers).status_code == 200
    assert fetch(client, victim_url).status_code == 200
